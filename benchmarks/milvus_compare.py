"""Local hybrid (FAISS + bm25s, weighted RRF here) against Milvus hybrid (dense + BM25 with Milvus's Chinese
analyzer, fused by Milvus's RRFRanker), on the seeds evaluation and on the inews benchmark.

    python benchmarks/milvus_compare.py [--eval ../shared/eval/seed_dev.jsonl]
        [--inews benchmarks/.cache/inews-3000-1000-13] [--limit N] [--out FILE]

Both sides use the real model and the same passages. Milvus runs as Milvus Lite (the real engine, a local
process). The inews corpus is not embedded again: the vectors of the FAISS snapshot that
benchmarks/retrieval_inews.py built are put in the Milvus index's embedding cache, so the Milvus build
only inserts them. Three rankings are measured: ``local`` (the service's default), ``milvus`` (fused
inside Milvus) and ``milvus-fused-here`` (Milvus's dense and BM25 lists, fused by this service's RRF);
``bm25`` alone compares bm25s over jieba words + bigrams with Milvus's BM25 over its Chinese analyzer.
Latencies are medians per question in one process (encoding the question included).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from retrieval_inews import ranks  # noqa: E402

from qa.config import Settings, load_settings  # noqa: E402
from qa.engine import Engine  # noqa: E402
from qa.evaluate import evaluate, read_eval_file  # noqa: E402
from qa.index import layout  # noqa: E402
from qa.index.embed_cache import EmbeddingCache  # noqa: E402
from qa.index.local_passages import LocalBackend  # noqa: E402
from qa.index.manifest import IndexKey, Manifest  # noqa: E402
from qa.index.search_index import read_snapshot  # noqa: E402

RANKINGS = ["local", "milvus", "milvus-fused-here"]


def engines(settings: Settings, work: Path) -> tuple[Engine, Engine]:
    """A FAISS engine on ``settings`` and a Milvus Lite engine on a copy of its index folder's cache."""
    milvus_settings = settings.model_copy(
        update={
            "index": settings.index.model_copy(update={"dir": work / "index-milvus"}),
            "vector_store": settings.vector_store.model_copy(
                update={"backend": "milvus", "uri": str(work / "milvus.db")}
            ),
        }
    )
    return Engine(settings), Engine(milvus_settings)


def use(engine: Engine, ranking: str) -> Engine:
    if ranking != "local":
        engine.indexing.current().searcher.fuse_in_engine = ranking == "milvus"
    return engine


def seeds(eval_file: Path, work: Path) -> dict[str, Any]:
    settings = load_settings(
        index={"dir": str(work / "index-faiss"), "show_progress": False},
    )
    local, milvus = engines(settings, work)
    local.build()
    milvus.build()
    out: dict[str, Any] = {}
    records = read_eval_file(eval_file)
    try:
        for ranking in RANKINGS:
            engine = use(local if ranking == "local" else milvus, ranking)
            _rows, summary = evaluate(engine, records)
            out[ranking] = summary["overall"]
    finally:
        milvus.close()
    return out


def seed_cache(faiss_index: Path, milvus_index: Path, key: IndexKey) -> int:
    """Put every article's vectors from the FAISS snapshot in the Milvus index's embedding cache."""
    version = layout.current_version(faiss_index)
    assert version is not None, f"no index in {faiss_index}: run benchmarks/retrieval_inews.py first"
    manifest = Manifest.from_json(layout.read_manifest(version, verify=False))
    snapshot = read_snapshot(version, manifest, LocalBackend())
    cache = EmbeddingCache(milvus_index, key.dense.vectors_json(), snapshot.passages.dim)
    for doc_id, rows in snapshot.rows_by_doc.items():
        cache.put(snapshot.hashes[doc_id], snapshot.passages.vectors(rows))
    return len(snapshot.rows_by_doc)


def inews(work: Path, limit: int) -> dict[str, Any]:
    corpus = work / "corpus"
    settings = load_settings(
        corpus={"dir": str(corpus)},
        index={"dir": str(work / "index"), "show_progress": True},
        retrieval={"candidates": 100},
    )
    local, milvus = engines(settings, work / "milvus")
    local.open(build_if_missing=False)
    started = time.perf_counter()
    if layout.current_version(milvus.settings.index_dir) is None:
        seed_cache(settings.index_dir, milvus.settings.index_dir, local.index_key())
    report = milvus.build()
    out: dict[str, Any] = {
        "passages": report.passages,
        "milvus_build_seconds": round(time.perf_counter() - started, 1),
        "passages_embedded": report.encoded,
    }
    by_id = titles(work)
    questions = [
        (doc, by_id[doc])
        for doc in (
            json.loads(line)["id"] for line in (corpus / "inews.jsonl").read_text("utf-8").splitlines()
        )
    ][: limit or None]
    out["questions"] = len(questions)
    try:
        for ranking in RANKINGS:
            engine = use(local if ranking == "local" else milvus, ranking)
            modes = (
                ["hybrid", "hybrid+rerank"] if ranking == "milvus" else ["bm25", "hybrid", "hybrid+rerank"]
            )
            for mode in modes:
                found, latency = [], []
                for want, title in questions:
                    t0 = time.perf_counter()
                    docs = ranks(engine, title, mode, depth=settings.retrieval.rerank_depth)
                    latency.append(time.perf_counter() - t0)
                    found.append(docs.index(want) + 1 if want in docs else None)
                n = len(found)
                out[f"{ranking} {mode}"] = {
                    "R@1": round(sum(x == 1 for x in found) / n, 4),
                    "R@10": round(sum(1 for x in found if x and x <= 10) / n, 4),
                    "MRR@10": round(sum(1 / x for x in found if x and x <= 10) / n, 4),
                    "p50_ms": round(statistics.median(latency) * 1000, 1),
                }
                print(ranking, mode, out[f"{ranking} {mode}"], flush=True)
    finally:
        milvus.close()
    return out


def titles(work: Path) -> dict[str, str]:
    """The title of each article of the corpus (the question asked for it), picked as retrieval_inews.py
    picks them (the folder's name holds its parameters)."""
    import random

    from inews import articles

    count, _max_chars, seed = (int(p) for p in work.name.split("-")[1:4])
    pool = [(i, t, c) for i, (t, c) in enumerate(articles()) if t.strip() and len(c.strip()) >= 50]
    return {f"inews-{i}": t for i, t, _c in sorted(random.Random(seed).sample(pool, count))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--eval", type=Path, default=ROOT.parent.parent / "shared" / "eval" / "seed_dev.jsonl"
    )
    parser.add_argument("--inews", type=Path, default=ROOT / ".cache" / "inews-3000-1000-13")
    parser.add_argument("--limit", type=int, default=0, help="ask only the first N inews titles (0 = all)")
    parser.add_argument("--skip-inews", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "milvus_compare.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("faiss", "faiss.loader", "jieba", "bm25s", "sentence_transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    results: dict[str, Any] = {}
    seeds_work = ROOT / ".cache" / "milvus-seeds"
    shutil.rmtree(seeds_work, ignore_errors=True)
    seeds_work.mkdir(parents=True)
    results["seeds"] = seeds(args.eval, seeds_work)
    for ranking, m in results["seeds"].items():
        print(f"seeds {ranking:18s} {json.dumps(m)}", flush=True)
    if not args.skip_inews:
        results["inews"] = inews(args.inews, args.limit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
