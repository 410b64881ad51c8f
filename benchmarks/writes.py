"""What one write costs, against corpus size and between two versions of the code, measured in one run.

    python benchmarks/writes.py [--articles 7353] [--samples 5] [--tree /path/to/old/checkout] ...

For each code tree (this checkout, plus every ``--tree``: e.g. a ``git worktree`` of an older commit) and
each corpus (the five seeds, and ``--articles`` inews articles: the whole package is about 75k passages), a
child process with that tree on ``PYTHONPATH`` builds the index, then times (medians of ``--samples``):

- ``POST /v1/documents`` as the engine does it: add one article until it is searchable (the call returns
  after the new snapshot is loaded), then delete it until it is never cited;
- a re-index of the unchanged corpus (``qa index`` finding nothing to do);
- a question (``Engine.ask``), to see that reads did not get slower.

The encoder is the deterministic fake one at e5-small's width (384): what is measured is the index
engine, not the model (one article's passages take the real model about 50 ms more). Writes a table and
JSON into ``benchmarks/results/``. Not a test: run it on purpose on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
WORK = ROOT / ".cache" / "writes"
PROBE = (
    "芽庄市与昆明市签署友好城市协议\n\n"
    "3月5日,芽庄市与昆明市在芽庄签署友好城市协议,双方将开通直航航线,并在旅游、教育和农业领域开展合作。"
    "两市还将互设旅游推广中心,每年举办文化交流周。\n"
)
QUESTIONS = ["芽庄市与哪个城市签署了友好城市协议?", "胡志明市与中国多少个地方保持友好合作关系?", "越南的出口"]


def write_corpus(folder: Path, corpus: str, articles: int) -> None:
    if folder.exists():
        return
    folder.mkdir(parents=True)
    if corpus == "seeds":
        for path in sorted((REPO / "seeds").iterdir()):
            shutil.copyfile(path, folder / path.name)
        return
    sys.path.insert(0, str(ROOT))
    from inews import articles as inews_articles
    from inews import write_corpus_files

    write_corpus_files(folder, inews_articles()[:articles])


def child(corpus_dir: Path, index_dir: Path, samples: int) -> dict[str, Any]:
    """Runs in the tree under test: whatever its ``qa`` is."""
    from qa.config import load_settings
    from qa.documents import NewDocument
    from qa.engine import Engine

    settings = load_settings(
        Path.cwd() / "config.toml",  # the tree's own: older trees know fewer keys
        corpus={"dir": corpus_dir},
        index={"dir": index_dir, "show_progress": False},
        model={"name": "fake:384"},
        retrieval={"min_dense_score": -1.0, "ranker": "hand", "abstention": "rules"},
    )
    engine = Engine(settings)
    started = time.perf_counter()
    report = engine.build(show_progress=False)
    build = time.perf_counter() - started

    def settle() -> None:
        wait = getattr(engine.indexing, "wait_for_merges", None)
        if wait is not None:
            wait()

    adds, deletes, reindex, asks = [], [], [], []
    for i in range(samples):
        settle()
        t = time.perf_counter()
        engine.add_document(NewDocument(doc_id=f"probe-{i}", text=PROBE))
        adds.append(time.perf_counter() - t)
        assert any(h.chunk.doc_id == f"probe-{i}" for h in engine.ask(QUESTIONS[0], top_k=10).hits)
        settle()
        t = time.perf_counter()
        engine.delete_document(f"probe-{i}")
        deletes.append(time.perf_counter() - t)
        assert all(h.chunk.doc_id != f"probe-{i}" for h in engine.ask(QUESTIONS[0], top_k=10).hits)
        settle()
        t = time.perf_counter()
        engine.build(show_progress=False)
        reindex.append(time.perf_counter() - t)
        for question in QUESTIONS:
            t = time.perf_counter()
            engine.ask(question)
            asks.append(time.perf_counter() - t)
    engine.close()
    return {
        "articles": report.articles,
        "passages": report.passages,
        "build_s": build,
        "add_s": statistics.median(adds),
        "delete_s": statistics.median(deletes),
        "reindex_s": statistics.median(reindex),
        "ask_s": statistics.median(asks),
        "samples": samples,
    }


def run_tree(tree: Path, label: str, corpora: dict[str, Path], samples: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, corpus_dir in corpora.items():
        index_dir = WORK / f"index-{label}-{name}"
        shutil.rmtree(index_dir, ignore_errors=True)
        env = {**os.environ, "PYTHONPATH": str(tree)}
        command = [sys.executable, str(Path(__file__).resolve()), "child", str(corpus_dir), str(index_dir)]
        done = subprocess.run(
            [*command, "--samples", str(samples)],
            env=env,
            cwd=tree,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"{label} on {name} failed:\n{done.stderr[-3000:]}")
        out[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{label:>8} {name:>6}: {json.dumps(out[name])}", flush=True)
        shutil.rmtree(index_dir, ignore_errors=True)
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        "| code | corpus | passages | add | delete | re-index unchanged | ask |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, corpora in results.items():
        for name, r in corpora.items():
            rows.append(
                f"| {label} | {name} | {r['passages']:,} | {r['add_s'] * 1000:.0f} ms | "
                f"{r['delete_s'] * 1000:.0f} ms | {r['reindex_s'] * 1000:.0f} ms | {r['ask_s'] * 1000:.1f} ms |"
            )
    for label, corpora in results.items():
        if "seeds" in corpora and "inews" in corpora:
            big, small = corpora["inews"], corpora["seeds"]
            rows.append(
                f"\n{label}: at {big['passages']:,} passages vs {small['passages']}: add ×{big['add_s'] / small['add_s']:.1f}, "
                f"delete ×{big['delete_s'] / small['delete_s']:.1f}"
            )
    labels = list(results)
    for other in labels[1:]:
        for name in results[labels[0]]:
            a, b = results[labels[0]][name], results[other][name]
            rows.append(
                f"{labels[0]} / {other} on {name}: add ×{a['add_s'] / b['add_s']:.3f}, "
                f"delete ×{a['delete_s'] / b['delete_s']:.3f}, re-index ×{a['reindex_s'] / b['reindex_s']:.3f}, "
                f"ask ×{a['ask_s'] / b['ask_s']:.2f}"
            )
    return "\n".join(rows)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        parser = argparse.ArgumentParser()
        parser.add_argument("mode")
        parser.add_argument("corpus", type=Path)
        parser.add_argument("index", type=Path)
        parser.add_argument("--samples", type=int, default=5)
        a = parser.parse_args()
        print(json.dumps(child(a.corpus, a.index, a.samples)))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--articles", type=int, default=7353, help="inews articles (all: 7353)")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another checkout to compare")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "writes.json")
    args = parser.parse_args()
    corpora = {"seeds": WORK / "corpus-seeds", "inews": WORK / f"corpus-inews-{args.articles}"}
    write_corpus(corpora["seeds"], "seeds", 0)
    write_corpus(corpora["inews"], "inews", args.articles)
    results = {"this": run_tree(REPO, "this", corpora, args.samples)}
    for i, tree in enumerate(args.tree, start=1):
        results[f"tree{i}"] = run_tree(tree.resolve(), f"tree{i}", corpora, args.samples)
    text = table(results)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "trees": [str(t) for t in args.tree]}, indent=1))
    args.out.with_suffix(".md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
