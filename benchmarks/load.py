"""Questions under load, for this checkout and older ones side by side in one run.

    python benchmarks/load.py [--articles 7353] [--tree /path/to/old/checkout] [--workers 1 2] ...

One index of ``--articles`` inews articles (the whole package is about 75k passages) for each index
format among the trees, built once by the first tree that writes it, with the fake encoder at e5's
width (what is measured is the service, not the model; the model adds its question encoding, int8
on two cores about 4-6 ms with VNNI and 11-13 ms with AVX2 alone, batched across waiting questions under
load; ``--real-model`` measures with it: e5 and the trees' own retrieval settings, over an index of e5
vectors built once, 75-100 minutes for the whole package on two cores, resumed from its embedding
cache when stopped). Trees of one format read
the same index, and for each tree, taking turns (``--rounds`` times, so that a change in the machine's
load falls on every tree alike):

- in process: a new process opens the engine, asks one English question (the dictionary it loads on first
  use is not in the figures) and five warm-up questions, then ``Engine.ask`` p50 / p95 / mean over
  ``--asked`` distinct questions;
- over HTTP: ``qa serve --workers W`` for every ``--workers``, ``--clients`` concurrent clients (each
  sends its next question when answered) for ``--seconds``: answered/s and latency percentiles; with
  ``--warmup S``, after S seconds of the same load that are not measured (a new server's first seconds:
  its workers' first questions, the English dictionary read in the background), i.e. the steady state.

Questions: the training questions (``benchmarks/data/inews_train_questions*.jsonl``, without history)
interleaved with the corpus's titles, all distinct, so that every answer is computed (no encoding or
passage is in a cache the first time). Writes a table and JSON into ``benchmarks/results/``. Not a test:
run it on purpose, and say how busy the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
sys.path.insert(0, str(ROOT))

import perf  # noqa: E402
import writes  # noqa: E402

WORK = ROOT / ".cache" / "load"
# The service's own settings (its learned ranker, its abstention) but for the fake encoder, whose cosines
# would fail every similarity floor: the whole answer path runs for every question.
OVERRIDES: dict[str, dict[str, Any]] = {
    "index": writes.OVERRIDES["index"],
    "model": writes.OVERRIDES["model"],
    "retrieval": {"min_dense_score": -1.0, "min_dense_score_foreign": -1.0},
}
# Its common words (tourists, visited, beaches) are not in the glossary: answering it reads the dictionary
# (CC-CEDICT, 1-4 s once per process), which is then not in the figures. ("What did Vietnam export to
# China?" never read it: "export" is a glossary word.)
ENGLISH = "How many tourists visited the beaches of China last year?"


def questions(corpus_dir: Path, count: int) -> list[str]:
    """Distinct questions: the training questions (no history) interleaved with the corpus's titles."""
    asked: list[str] = []
    for path in sorted((ROOT / "data").glob("inews_train_questions*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if not record.get("history"):
                asked.append(str(record["question"]))
    asked = list(dict.fromkeys(asked))
    titles = [t for t in writes.questions_of(corpus_dir, count) if t not in asked]
    mixed = [q for pair in zip(asked, titles, strict=False) for q in pair]
    return list(dict.fromkeys(mixed + titles[len(asked) :] + asked[len(titles) :]))[:count]


def environment(tree: Path, corpus_dir: Path, index_dir: Path, *, real_model: bool = False) -> dict[str, str]:
    """``real_model``: the tree's own model and retrieval settings (e5, int8 where faster), the model
    read from this checkout's model folder, so that question encoding is in the figures."""
    env = {**os.environ, "PYTHONPATH": str(tree), "QA_CONFIG": str(tree / "config.toml")}
    env |= {"QA_CORPUS__DIR": str(corpus_dir), "QA_INDEX__DIR": str(index_dir)}
    if real_model:
        env["QA_INDEX__SHOW_PROGRESS"] = "false"
        env["QA_MODEL__CACHE_DIR"] = str(REPO / ".qa" / "models")
        return env
    for section, values in OVERRIDES.items():
        for key, value in values.items():
            env[f"QA_{section.upper()}__{key.upper()}"] = (
                json.dumps(value) if not isinstance(value, str) else value
            )
    return env


def index_format(tree: Path) -> int:
    """The index format the tree's ``qa`` reads and writes."""
    code = "from qa.index.layout import FORMAT_VERSION; print(FORMAT_VERSION)"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tree, check=True, capture_output=True)
    return int(done.stdout)


def in_process_child(asked: Path) -> dict[str, Any]:
    """Runs in the tree under test (its ``qa`` on PYTHONPATH, settings from the environment)."""
    from qa.config import load_settings
    from qa.engine import Engine

    engine = Engine(load_settings()).open(build_if_missing=False)
    todo = json.loads(asked.read_text(encoding="utf-8"))
    engine.ask(ENGLISH)
    from qa.retrieval.dictionary import shared

    if shared()._senses is None:
        raise SystemExit(f"{ENGLISH!r} no longer reads the dictionary: pick another warm-up question")
    for question in todo[:5]:
        engine.ask(question)
    times, encode = [], []
    for question in todo[5:]:
        t = time.perf_counter()
        engine.ask(question)
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
        engine.encoder.encode_queries([question])  # the model alone (what of the question it costs)
        encode.append(time.perf_counter() - t)
    ordered = sorted(times)
    return {
        "n": len(times),
        "p50_ms": statistics.median(times) * 1000,
        "p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1000,
        "mean_ms": statistics.mean(times) * 1000,
        "encode_p50_ms": statistics.median(encode) * 1000,
    }


def in_process(tree: Path, env: dict[str, str], asked: Path) -> dict[str, Any]:
    return writes.run_child(tree, ["--child", str(asked)], env, Path(__file__))


def over_http(
    env: dict[str, str], asked: list[str], clients: int, seconds: float, workers: int, warmup: float = 0.0
) -> dict[str, Any]:
    """One load level against a new ``qa serve``; its first question (asked before the level starts)
    is the English one, so the dictionary it loads is not in the figures."""
    result = perf.measure_http(env, [ENGLISH, *asked], [clients], seconds, workers, warmup)
    level: dict[str, Any] = result["levels"][0]
    return level


def _median_of(levels: list[dict[str, Any]], key: str) -> str:
    """The median of a per-level figure, as text ("-" where no level has it: older results)."""
    values = [v[key] for v in levels if v.get(key) is not None]
    return f"{statistics.median(values):.1f}" if values else "-"


def table(results: dict[str, Any]) -> str:
    lines = [
        "| code | in process p50 / p95 / mean | "
        + " | ".join(
            f"HTTP, {w} worker{'s' if w > 1 else ''}: answered/s, p50 / p99, CPU ms per answer "
            "(server / load generator)"
            for w in results["workers"]
        )
        + " |",
        "|---|---|" + "---|" * len(results["workers"]),
    ]
    for label, runs in results["trees"].items():
        ask = runs["in_process"]
        cells = [
            f"{statistics.median(r['p50_ms'] for r in ask):.1f} / {statistics.median(r['p95_ms'] for r in ask):.1f} / "
            f"{statistics.median(r['mean_ms'] for r in ask):.1f} ms "
            f"(encoding alone p50 {_median_of(ask, 'encode_p50_ms')})"
        ]
        for workers in results["workers"]:
            levels = runs["http"][str(workers)]
            cells.append(
                f"{statistics.median(v['answered_per_s'] for v in levels):.1f}/s, "
                f"{statistics.median(v['latency_ms']['p50'] for v in levels):.0f} / "
                f"{statistics.median(v['latency_ms']['p99'] for v in levels):.0f} ms, "
                f"{_median_of(levels, 'server_cpu_ms_per_answer')} / "
                f"{_median_of(levels, 'client_cpu_ms_per_request')}"
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(in_process_child(Path(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--articles", type=int, default=7353, help="inews articles (all: 7353)")
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another checkout to compare")
    parser.add_argument("--asked", type=int, default=205, help="questions asked in process (5 warm up)")
    parser.add_argument("--questions", type=int, default=4000, help="distinct questions for HTTP")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=20.0, help="per HTTP level")
    parser.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        help="seconds of load before each HTTP level, not measured (the steady state; 0: from the start)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rebuild", action="store_true", help="build the index again")
    parser.add_argument(
        "--real-model", action="store_true", help="e5 (the trees' own model settings), not the fake encoder"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "load.json")
    args = parser.parse_args()

    corpus_dir = writes.WORK / f"corpus-inews-{args.articles}"
    writes.write_corpus(corpus_dir, "inews", args.articles)
    trees = {"this checkout": REPO} | {str(t): t.resolve() for t in args.tree}
    index_of: dict[str, Path] = {}
    for label, tree in trees.items():
        # One index per format: a tree reads only its own (an older one is not rebuilt under its reader).
        model = "-e5" if args.real_model else ""
        index_dir = WORK / f"index-inews-{args.articles}-f{index_format(tree)}{model}"
        env = environment(tree, corpus_dir, index_dir, real_model=args.real_model)
        if (args.rebuild and index_dir not in index_of.values()) or not (index_dir / "CURRENT").exists():
            subprocess.run(
                [perf.QA, "index", "--rebuild"], env=env, cwd=tree, check=True, capture_output=True
            )
        index_of[label] = index_dir
    asked = questions(corpus_dir, max(args.questions, args.asked))
    WORK.mkdir(parents=True, exist_ok=True)
    asked_file = WORK / "asked.json"
    asked_file.write_text(json.dumps(asked[: args.asked], ensure_ascii=False), encoding="utf-8")

    results: dict[str, Any] = {"articles": args.articles, "workers": args.workers, "clients": args.clients}
    results["model"] = "e5" if args.real_model else "fake:384"
    results["trees"] = {
        label: {"in_process": [], "http": {str(w): [] for w in args.workers}} for label in trees
    }
    for _ in range(args.rounds):
        for label, tree in trees.items():
            env = environment(tree, corpus_dir, index_of[label], real_model=args.real_model)
            results["trees"][label]["in_process"].append(in_process(tree, env, asked_file))
            for workers in args.workers:
                level = over_http(env, asked, args.clients, args.seconds, workers, args.warmup)
                results["trees"][label]["http"][str(workers)].append(level)
            print(label, json.dumps(results["trees"][label], default=str)[:400], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    if args.rounds:  # ``--rounds 0`` only builds the indexes
        print(table(results))


if __name__ == "__main__":
    main()
