"""Retrieval quality on real news: each title → its article, hybrid side by side with BM25 and dense only.

    python benchmarks/retrieval_inews.py [--articles 3000] [--max-chars 1000] [--out FILE]

Articles (without their titles) are indexed with the service's own ingestion, chunking, model and index;
each title is then asked as a question. An article is found at the rank of its first passage. The modes
share one index and are measured in the same run: dense only, BM25 only, weighted RRF of both, and RRF
with the passage-level reranking the service uses. Writes a table and JSON (benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import time
from pathlib import Path
from typing import Any

from inews import articles

from qa.config import load_settings
from qa.engine import Engine

ROOT = Path(__file__).resolve().parent


def corpus_file(folder: Path, picked: list[tuple[int, str, str]], max_chars: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "inews.jsonl", "w", encoding="utf-8") as out:
        for i, _title, content in picked:
            text = content[:max_chars] if max_chars else content
            out.write(json.dumps({"id": f"inews-{i}", "title": "", "text": text}, ensure_ascii=False) + "\n")


def ranks(engine: Engine, question: str, mode: str, depth: int) -> list[str]:
    snap = engine.indexing.current()
    query = engine.queries.build(question)
    r = engine.settings.retrieval
    searcher = snap.searcher
    searcher.settings = r.model_copy(
        update={
            "dense_weight": 0.0 if mode == "bm25" else r.dense_weight,
            "lexical_weight": 0.0 if mode == "dense" else r.lexical_weight,
        }
    )
    candidates = searcher.search(query, depth)
    searcher.settings = r
    if mode == "hybrid+rerank":
        candidates = snap.reranker.rerank(query, candidates)
    docs: list[str] = []
    for cand in candidates:
        doc = snap.index.chunks[cand.row].doc_id
        if doc not in docs:
            docs.append(doc)
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=3000)
    parser.add_argument(
        "--max-chars", type=int, default=1000, help="index this many characters of each article (0 = all)"
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "retrieval_inews.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("faiss", "faiss.loader", "jieba", "bm25s", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    pool = [(i, t, c) for i, (t, c) in enumerate(articles()) if t.strip() and len(c.strip()) >= 50]
    picked = sorted(random.Random(args.seed).sample(pool, args.articles))
    work = ROOT / ".cache" / f"inews-{args.articles}-{args.max_chars}-{args.seed}"
    corpus_file(work / "corpus", picked, args.max_chars)
    settings = load_settings(
        corpus={"dir": str(work / "corpus")},
        index={"dir": str(work / "index"), "show_progress": True},
        retrieval={"candidates": 100},
    )
    engine = Engine(settings)
    started = time.perf_counter()
    report = engine.build()
    build_seconds = time.perf_counter() - started

    modes = ["dense", "bm25", "hybrid", "hybrid+rerank"]
    found: dict[str, list[int | None]] = {m: [] for m in modes}
    latency: dict[str, list[float]] = {m: [] for m in modes}
    for i, title, _content in picked:
        for mode in modes:
            t0 = time.perf_counter()
            docs = ranks(engine, title, mode, depth=settings.retrieval.rerank_depth)
            latency[mode].append(time.perf_counter() - t0)
            want = f"inews-{i}"
            found[mode].append(docs.index(want) + 1 if want in docs else None)

    results: dict[str, Any] = {
        "articles": args.articles,
        "max_chars": args.max_chars,
        "passages": report.passages,
        "build_seconds": round(build_seconds, 1),
        "passages_embedded": report.encoded,
        "modes": {},
    }
    print(
        f"\n{args.articles} inews titles → their articles ({report.passages} passages, "
        f"first {args.max_chars or 'all'} characters of each article)\n"
    )
    print(f"{'mode':15s} {'R@1':>7s} {'R@10':>7s} {'MRR@10':>7s} {'p50 ms':>8s}")
    for mode in modes:
        r = found[mode]
        n = len(r)
        m = {
            "R@1": sum(1 for x in r if x == 1) / n,
            "R@10": sum(1 for x in r if x and x <= 10) / n,
            "MRR@10": sum(1 / x for x in r if x and x <= 10) / n,
            "p50_ms": statistics.median(latency[mode]) * 1000,
        }
        results["modes"][mode] = {k: round(v, 4) for k, v in m.items()}
        print(f"{mode:15s} {m['R@1']:7.3f} {m['R@10']:7.3f} {m['MRR@10']:7.3f} {m['p50_ms']:8.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
