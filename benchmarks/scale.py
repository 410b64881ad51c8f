"""Scale-up: exact Flat vs the HNSW store at up to 1M passages, built from the real inews index.

    python benchmarks/scale.py [--passages 1000000] [--queries 300] [--ef 64,128,256,512]

Passage vectors: pairs of real e5 passage vectors of the cached inews index (run
benchmarks/retrieval_inews.py once) mixed with noise and renormalised; BM25 tokens: the first half of
one real passage's tokens and the second half of another's. Queries: real inews titles, encoded with the
real model in this run. Measured side by side: build time, recall@10 of HNSW against Flat (several
efSearch), resident memory of each store + memory-mapped BM25 (each in its own process), and per-query
latency (encode + dense search + BM25 search + candidate vectors) with both stores loaded, interleaved.
Writes a table and JSON (benchmarks/results/).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from qa.embeddings.ann import HnswStore
from qa.embeddings.vector_store import build_store, load_store
from qa.text.segment_bm25 import Postings, SegmentedBM25

ROOT = Path(__file__).resolve().parent
SOURCE = ROOT / ".cache" / "inews-3000-1000-13"
CANDIDATES = 50  # what the service asks of each list (retrieval.candidates)


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 1e6


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def source_index() -> Path:
    index = SOURCE / "index"
    version = index / (index / "CURRENT").read_text().split()[0]
    if not (version / "vectors.npy").exists():
        raise SystemExit(f"no real index at {version}: run benchmarks/retrieval_inews.py first")
    return version


def synthesize(n: int, seed: int) -> tuple[np.ndarray, list[list[str]]]:
    version = source_index()
    base = np.load(version / "vectors.npy")
    with open(version / "tokens.jsonl", encoding="utf-8") as handle:
        real = [json.loads(line) for line in handle if line.strip()]
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), np.float32)
    tokens: list[list[str]] = []
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        a, b = rng.integers(0, len(base), m), rng.integers(0, len(base), m)
        w = rng.uniform(0.55, 1.0, (m, 1)).astype(np.float32)
        v = w * base[a] + (1 - w) * base[b] + rng.normal(0, 0.02, (m, base.shape[1])).astype(np.float32)
        out[start : start + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
        for i, j in zip(a.tolist(), b.tolist(), strict=True):
            ta, tb = real[i], real[j]
            tokens.append(ta[: len(ta) // 2 + 1] + tb[len(tb) // 2 :])
    return out, tokens


def queries(count: int, seed: int) -> list[str]:
    sys.path.insert(0, str(ROOT))
    from inews import articles

    pool = [t for t, c in articles() if t.strip() and len(c.strip()) >= 50]
    return random.Random(seed).sample(pool, count)


def child(kind: str, work: Path, n: int) -> None:
    """Resident memory of one store + BM25, loaded as the service loads them, before and after queries."""
    from qa.config import load_settings

    params = load_settings().vector_store.store_params()
    qv = np.load(work / "queries.npy")
    qtokens = json.loads((work / "queries.json").read_text(encoding="utf-8"))["tokens"]
    before = rss_mb()
    store = load_store(work / kind, qv.shape[1], params)
    lexical = SegmentedBM25([(Postings.load(work / "bm25"), None)])
    loaded = rss_mb()
    for vec, toks in zip(qv, qtokens, strict=True):
        dense = store.search(vec[None, :], CANDIDATES)[0]
        lex = lexical.search(toks, CANDIDATES)
        store.vectors([r for r, _ in dense] + [r for r, _ in lex])
    status = Path("/proc/self/status").read_text()
    split = {
        f"{key}_after_queries_mb": int(re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)[1]) / 1024  # type: ignore[index]
        for key in ("RssAnon", "RssFile")
    }  # anonymous memory vs pages of memory-mapped files (the kernel can drop those under pressure)
    print(json.dumps({"rss_load_mb": loaded - before, "rss_after_queries_mb": rss_mb() - before} | split))


def measure_rss(kind: str, work: Path, n: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", kind, "--work", str(work), "--passages", str(n)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def recall(truth: list[list[tuple[int, float]]], got: list[list[tuple[int, float]]], k: int = 10) -> float:
    return statistics.mean(
        len({r for r, _ in t[:k]} & {r for r, _ in g[:k]}) / max(1, min(k, len(t)))
        for t, g in zip(truth, got, strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--ef", default="64,128,256,512", help="efSearch values to measure recall at")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--reuse", action="store_true", help="measure the stores of an earlier run again")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.passages
    work = args.work or ROOT / ".cache" / f"scale-{n}"
    if args.child:
        child(args.child, work, n)
        return
    logging.basicConfig(level=logging.WARNING)
    from qa.config import load_settings
    from qa.engine import Engine

    settings = load_settings()
    params = settings.vector_store.store_params()
    engine = Engine(settings)
    reuse = args.reuse and all((work / part).is_dir() for part in ("bm25", "flat", "hnsw"))
    if not reuse:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    res: dict[str, Any] = {"passages": n, "queries": args.queries, "hnsw": {}, "reused_build": reuse}
    if not reuse:
        t0 = time.perf_counter()
        vectors, tokens = synthesize(n, args.seed)
        res["synthesize_s"] = time.perf_counter() - t0
        print(f"{n} synthetic passages in {res['synthesize_s']:.0f} s", flush=True)

    titles = queries(args.queries, args.seed)
    built = [engine.queries.build(t) for t in titles]
    encoder = engine.encoder
    qv = encoder.encode_queries([q.dense_text for q in built])
    np.save(work / "queries.npy", qv)
    (work / "queries.json").write_text(json.dumps({"tokens": [q.tokens for q in built]}, ensure_ascii=False))

    if reuse:  # the stores and BM25 of an earlier run with the same --passages: only measure again
        flat = load_store(work / "flat", qv.shape[1])
        hnsw = load_store(work / "hnsw", qv.shape[1], params)
    else:
        t0 = time.perf_counter()
        Postings.build(tokens).save(work / "bm25")
        res["build_bm25_s"] = time.perf_counter() - t0
        del tokens
        gc.collect()
        print(f"BM25 built in {res['build_bm25_s']:.0f} s", flush=True)
        t0 = time.perf_counter()
        flat = build_store(vectors, vectors.shape[1], replace(params, flat_max_passages=n))
        flat.save(work / "flat")
        res["build_flat_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        hnsw = build_store(vectors, vectors.shape[1], replace(params, flat_max_passages=0))
        hnsw.save(work / "hnsw")
        res["build_hnsw_s"] = time.perf_counter() - t0
        print(f"Flat built in {res['build_flat_s']:.0f} s, HNSW in {res['build_hnsw_s']:.0f} s", flush=True)
        del vectors
    assert isinstance(hnsw, HnswStore)

    truth = flat.search(qv, 10)
    rng = np.random.default_rng(args.seed)
    masks = {"10%": rng.random(n) < 0.10, "1%": rng.random(n) < 0.01}
    for ef in [int(e) for e in args.ef.split(",")]:
        hnsw.params = replace(params.hnsw, ef_search=ef)
        lat = []
        got = []
        for vec in qv:
            t = time.perf_counter()
            got.append(hnsw.search(vec[None, :], CANDIDATES)[0])
            lat.append(time.perf_counter() - t)
        row = {"recall@10": recall(truth, got), "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}
        for name, mask in masks.items():
            got = [hnsw.search(vec[None, :], CANDIDATES, mask)[0] for vec in qv[:100]]
            row[f"recall@10 filter {name}"] = recall(flat.search(qv[:100], 10, mask), got)
        res["hnsw"][ef] = row
        print(f"ef {ef}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    del flat, hnsw
    gc.collect()

    res["rss_mb"] = {kind: measure_rss(kind, work, n) for kind in ("hnsw", "flat")}
    print(f"RSS (store + BM25): {res['rss_mb']}", flush=True)

    stores = {kind: load_store(work / kind, qv.shape[1], params) for kind in ("flat", "hnsw")}
    lexical = SegmentedBM25([(Postings.load(work / "bm25"), None)])
    parts: dict[str, list[float]] = {p: [] for p in ("encode", "bm25", "flat", "hnsw", "vectors")}
    for _ in range(2):
        for q in built:
            t = time.perf_counter()
            vec = encoder.encode_queries([q.dense_text])
            parts["encode"].append(time.perf_counter() - t)
            t = time.perf_counter()
            lex = lexical.search(q.tokens, CANDIDATES)
            parts["bm25"].append(time.perf_counter() - t)
            for kind, store in stores.items():
                t = time.perf_counter()
                dense = store.search(vec, CANDIDATES)[0]
                parts[kind].append(time.perf_counter() - t)
            t = time.perf_counter()
            stores["hnsw"].vectors([r for r, _ in dense] + [r for r, _ in lex])
            parts["vectors"].append(time.perf_counter() - t)
    res["latency_ms"] = {
        p: {"p50": pct(v, 50), "p95": pct(v, 95), "p99": pct(v, 99)} for p, v in parts.items()
    }
    for kind in ("flat", "hnsw"):
        total = [
            sum(x) for x in zip(parts["encode"], parts["bm25"], parts[kind], parts["vectors"], strict=True)
        ]
        res["latency_ms"][f"total {kind}"] = {
            "p50": pct(total, 50),
            "p95": pct(total, 95),
            "p99": pct(total, 99),
        }

    print(f"\n{n} passages, {args.queries} real title queries (×2), HNSW {params.hnsw}\n")
    print(f"{'':22s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s}")
    for name, v in res["latency_ms"].items():
        print(f"{name:22s} {v['p50']:8.2f} {v['p95']:8.2f} {v['p99']:8.2f}")
    out = args.out or ROOT / "results" / f"scale_{n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str), encoding="utf-8")
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
