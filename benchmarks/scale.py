"""Scale-up: HNSW graphs and search efforts against exact search at up to 1M passages, from a real index.

    python benchmarks/scale.py [--index DIR ...] [--passages 1000000] [--queries 200]
                               [--graphs 32/40,48/80] [--ef 1024,2048]

Passage vectors: pairs of the real e5 passage vectors of an index this version built (its format: every
live row of its segments' vector stores) mixed with noise and renormalised; BM25 tokens: the first half
of one real passage's tokens (its segment tables) and the second half of another's. Queries: real inews
titles, encoded in this run with the query encoder the service loads.

Cached in benchmarks/.cache/scale-N/ between runs: the synthetic vectors and tokens, BM25, the exact
(Flat) top 10 of the queries, and one HNSW store per graph (M/efConstruction) with its build time, so a
graph is built once. Measured, side by side: build time per graph; recall@10 against Flat per graph and
efSearch (also behind filters allowing 10% / 1% of rows); resident memory of each graph's store with
memory-mapped BM25, each in a process of its own; latency per question with every graph loaded, the
variants interleaved question by question (their order rotating): encode + BM25 + dense search +
candidate vectors. Writes a table and JSON (benchmarks/results/).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import logging
import os
import random
import re
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psutil

from qa.embeddings.ann import HnswStore
from qa.embeddings.vector_store import FaissFlatStore, StoreParams, build_store, load_store
from qa.errors import IndexFormatError
from qa.index import layout
from qa.index.local_passages import VECTORS_DIR
from qa.index.manifest import Manifest
from qa.index.search_index import assemble, read_segment_tables
from qa.text.segment_bm25 import Postings, SegmentedBM25

ROOT = Path(__file__).resolve().parent
CANDIDATES = 50  # what the service asks of each list (retrieval.candidates)
FILTERED_QUERIES = 100
Vectors = npt.NDArray[np.float32]
Hits = list[list[tuple[int, float]]]


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 1e6


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def parse_graphs(text: str) -> list[tuple[int, int]]:
    """``"32/40,48/80"``: (M, efConstruction) pairs."""
    out = []
    for part in text.split(","):
        m, efc = part.split("/")
        out.append((int(m), int(efc)))
    return out


def graph_dir(work: Path, m: int, efc: int) -> Path:
    return work / f"hnsw-m{m}-efc{efc}"


# -- the real passages -----------------------------------------------------------------------------


def source_passages(index_dirs: list[Path]) -> tuple[Vectors, list[list[str]]]:
    """Every live passage of the live version of each index: its vector and its BM25 tokens."""
    vectors: list[Vectors] = []
    tokens: list[list[str]] = []
    for index_dir in index_dirs:
        pointer = layout.read_pointer(index_dir)
        if pointer is None:
            raise SystemExit(f"no index in {index_dir}")
        version = layout.pointed_version(index_dir, pointer)
        try:
            manifest = Manifest.from_json(layout.read_manifest(version, verify=True))
            parts = [
                (read_segment_tables(index_dir, ref, verify=True), ref.dead) for ref in manifest.segments
            ]
        except IndexFormatError as exc:
            raise SystemExit(f"{index_dir}: {exc}") from exc
        snapshot = assemble(parts)
        for part in snapshot.parts:
            store = load_store(part.tables.folder / VECTORS_DIR, manifest.key.dense.dim)
            rows = range(len(store)) if part.local is None else part.local.tolist()
            vectors.append(store.vectors(rows))
        tokens.extend(list(snapshot.tokens[r]) for r in range(snapshot.size))
    out = np.concatenate(vectors)
    if len(out) != len(tokens):
        raise SystemExit(f"{len(out)} vectors but {len(tokens)} token lists")
    return out, tokens


def synthesize(work: Path, index_dirs: list[Path], n: int, seed: int) -> dict[str, Any]:
    """``vectors.npy`` and the token ids of the BM25 corpus (``tokens/``, as lexical_engines.Corpus)."""
    from lexical_engines import recombine

    base, real = source_passages(index_dirs)
    vocab: dict[str, int] = {}
    rows = [np.asarray([vocab.setdefault(t, len(vocab)) for t in r], dtype=np.int32) for r in real]
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    starts = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    flat = np.concatenate(rows)
    rng = np.random.default_rng(seed)
    dim = base.shape[1]
    out = np.lib.format.open_memmap(work / "vectors.tmp.npy", mode="w+", dtype=np.float32, shape=(n, dim))
    pieces, row_lengths = [], []
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        a, b = rng.integers(0, len(base), m), rng.integers(0, len(base), m)
        w = rng.uniform(0.55, 1.0, (m, 1)).astype(np.float32)
        v = w * base[a] + (1 - w) * base[b] + rng.normal(0, 0.02, (m, dim)).astype(np.float32)
        out[start : start + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
        ids, row_len = recombine(flat, starts, lengths, a, b)
        pieces.append(ids)
        row_lengths.append(row_len)
    out.flush()
    del out
    folder = work / "tokens"
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "ids.npy", np.concatenate(pieces))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.concatenate(row_lengths), out=offsets[1:])
    np.save(folder / "offsets.npy", offsets)
    (folder / "vocab.json").write_text(json.dumps(list(vocab), ensure_ascii=False), encoding="utf-8")
    (folder / "queries.json").write_text("[]", encoding="utf-8")
    os.replace(work / "vectors.tmp.npy", work / "vectors.npy")
    return {"real_passages": len(base), "tokens_per_passage": float(offsets[-1] / n)}


def build_bm25(work: Path, n: int) -> None:
    """The service's postings, built from token ids (lexical_engines.lean_postings: the same arrays as
    ``Postings.build``, which would peak near 11 GB at 1M passages)."""
    sys.path.insert(0, str(ROOT))
    from lexical_engines import Corpus, lean_postings

    lean_postings(Corpus(work / "tokens"), n).save(work / "bm25")


# -- queries and the exact answers -----------------------------------------------------------------


def queries(count: int, seed: int) -> list[str]:
    sys.path.insert(0, str(ROOT))
    from inews import articles

    pool = [t for t, c in articles() if t.strip() and len(c.strip()) >= 50]
    return random.Random(seed).sample(pool, count)


def masks(n: int, seed: int) -> dict[str, npt.NDArray[np.bool_]]:
    rng = np.random.default_rng(seed)
    return {"10%": rng.random(n) < 0.10, "1%": rng.random(n) < 0.01}


def exact_top10(work: Path, qv: Vectors, n: int, seed: int) -> dict[str, Hits]:
    """Flat's top 10 of every query, and of the first FILTERED_QUERIES behind each mask (cached)."""
    key = hashlib.sha256(qv.tobytes()).hexdigest()[:16]
    path = work / f"truth-{key}.json"
    if path.exists():
        cached: dict[str, Hits] = json.loads(path.read_text())
        return cached
    flat = FaissFlatStore(qv.shape[1])
    flat.add(np.load(work / "vectors.npy", mmap_mode="r"))
    truth = {"all": flat.search(qv, 10)}
    for name, mask in masks(n, seed).items():
        truth[name] = flat.search(qv[:FILTERED_QUERIES], 10, mask)
    path.write_text(json.dumps(truth))
    return truth


def recall(truth: Hits, got: Hits, k: int = 10) -> float:
    return statistics.mean(
        len({r for r, _ in t[:k]} & {r for r, _ in g[:k]}) / max(1, min(k, len(t)))
        for t, g in zip(truth, got, strict=True)
    )


# -- graphs ----------------------------------------------------------------------------------------


def build_graph(work: Path, m: int, efc: int, base: StoreParams) -> dict[str, Any]:
    folder = graph_dir(work, m, efc)
    record = folder / "build.json"
    if record.exists():
        cached: dict[str, Any] = json.loads(record.read_text())
        return cached | {"cached": True}
    vectors = np.load(work / "vectors.npy")
    params = replace(base, flat_max_passages=0, hnsw=replace(base.hnsw, m=m, ef_construction=efc))
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    store = build_store(vectors, vectors.shape[1], params)
    store.save(folder)
    info = {
        "build_s": time.perf_counter() - t0,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    record.write_text(json.dumps(info))
    del store, vectors
    gc.collect()
    return info | {"cached": False}


def child(folder: Path, work: Path, ef: int) -> None:
    """Resident memory of one store + BM25, loaded as the service loads them, before and after queries."""
    from qa.config import load_settings

    params = load_settings().vector_store.store_params()
    params = replace(params, hnsw=replace(params.hnsw, ef_search=ef))
    qv = np.load(work / "queries.npy")
    qtokens = json.loads((work / "queries.json").read_text(encoding="utf-8"))["tokens"]
    before = rss_mb()
    store = load_store(folder, qv.shape[1], params)
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


def measure_rss(folder: Path, work: Path, ef: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", str(folder), "--work", str(work), "--child-ef", str(ef)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--index", type=Path, action="append", help="an index in this version's format (repeatable)"
    )
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--graphs", default="32/40,48/80", help="M/efConstruction of each HNSW graph")
    parser.add_argument("--ef", default="1024,2048", help="efSearch values measured on every graph")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds of the latency loop")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--child-ef", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.passages
    work = args.work or ROOT / ".cache" / f"scale-{n}"
    if args.child:
        child(Path(args.child), work, args.child_ef)
        return
    logging.basicConfig(level=logging.WARNING)
    from qa.config import load_settings
    from qa.engine import Engine

    settings = load_settings()
    params = settings.vector_store.store_params()
    index_dirs = args.index or [settings.index_dir]
    graphs = parse_graphs(args.graphs)
    efs = [int(e) for e in args.ef.split(",")]
    work.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"passages": n, "queries": args.queries, "graphs": {}, "variants": {}}
    res["sources"] = [str(p) for p in index_dirs]
    res["load_average_at_start"] = os.getloadavg()

    if not (work / "vectors.npy").exists():
        t0 = time.perf_counter()
        res["synthesize"] = synthesize(work, index_dirs, n, args.seed)
        res["synthesize"]["seconds"] = time.perf_counter() - t0
        print(f"{n} synthetic passages in {res['synthesize']['seconds']:.0f} s", flush=True)
    if not (work / "bm25").is_dir():
        t0 = time.perf_counter()
        build_bm25(work, n)
        res["build_bm25_s"] = time.perf_counter() - t0
        print(f"BM25 built in {res['build_bm25_s']:.0f} s", flush=True)
    gc.collect()

    engine = Engine(settings)
    titles = queries(args.queries, args.seed)
    built = [engine.queries.build(t) for t in titles]
    encoder = engine.encoder
    qv = encoder.encode_queries([q.dense_text for q in built])
    np.save(work / "queries.npy", qv)
    (work / "queries.json").write_text(json.dumps({"tokens": [q.tokens for q in built]}, ensure_ascii=False))
    t0 = time.perf_counter()
    truth = exact_top10(work, qv, n, args.seed)
    print(f"exact top 10 in {time.perf_counter() - t0:.0f} s", flush=True)
    gc.collect()

    for m, efc in graphs:
        info = build_graph(work, m, efc, params)
        res["graphs"][f"{m}/{efc}"] = info
        print(
            f"HNSW M {m} efC {efc}: built in {info['build_s']:.0f} s (cached: {info['cached']})", flush=True
        )

    # Recall, one graph at a time (the dense search alone, unfiltered and filtered).
    filters = masks(n, args.seed)
    for m, efc in graphs:
        store = load_store(graph_dir(work, m, efc), qv.shape[1], params)
        assert isinstance(store, HnswStore)
        for ef in efs:
            store.params = replace(store.params, ef_search=ef)
            got = [store.search(vec[None, :], CANDIDATES)[0] for vec in qv]
            row: dict[str, Any] = {
                "graph": f"{m}/{efc}",
                "ef_search": ef,
                "recall@10": recall(truth["all"], got),
            }
            for name, mask in filters.items():
                got = [store.search(vec[None, :], CANDIDATES, mask)[0] for vec in qv[:FILTERED_QUERIES]]
                row[f"recall@10 filter {name}"] = recall(truth[name], got)
            res["variants"][f"{m}/{efc}/{ef}"] = row
            print(", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
        del store
        gc.collect()

    for m, efc in graphs:
        key = f"{m}/{efc}"
        res["graphs"][key]["rss_mb"] = measure_rss(graph_dir(work, m, efc), work, max(efs))
        print(f"RSS {key} (store + BM25, efSearch {max(efs)}): {res['graphs'][key]['rss_mb']}", flush=True)

    # Latency: every graph loaded, the variants interleaved per question, their order rotating.
    stores: dict[str, HnswStore] = {}
    for m, efc in graphs:
        store = load_store(graph_dir(work, m, efc), qv.shape[1], params)
        assert isinstance(store, HnswStore)
        stores[f"{m}/{efc}"] = store
    lexical = SegmentedBM25([(Postings.load(work / "bm25"), None)])
    variants = [(f"{m}/{efc}", ef) for m, efc in graphs for ef in efs]
    parts: dict[str, list[float]] = {"encode": [], "bm25": []}
    dense: dict[str, list[float]] = {f"{g}/{ef}": [] for g, ef in variants}
    fetch: dict[str, list[float]] = {f"{g}/{ef}": [] for g, ef in variants}
    turn = 0
    for measured in [False] + [True] * args.rounds:  # a warm-up round first
        for q in built:
            t = time.perf_counter()
            vec = encoder.encode_queries([q.dense_text])
            encode_s = time.perf_counter() - t
            t = time.perf_counter()
            lex = lexical.search(q.tokens, CANDIDATES)
            bm25_s = time.perf_counter() - t
            if measured:
                parts["encode"].append(encode_s)
                parts["bm25"].append(bm25_s)
            turn += 1
            for graph, ef in variants[turn % len(variants) :] + variants[: turn % len(variants)]:
                store = stores[graph]
                store.params = replace(store.params, ef_search=ef)
                t = time.perf_counter()
                hits = store.search(vec, CANDIDATES)[0]
                search_s = time.perf_counter() - t
                t = time.perf_counter()
                store.vectors([r for r, _ in hits] + [r for r, _ in lex])
                if measured:
                    dense[f"{graph}/{ef}"].append(search_s)
                    fetch[f"{graph}/{ef}"].append(time.perf_counter() - t)
    res["latency_ms"] = {p: {"p50": pct(v, 50), "p99": pct(v, 99)} for p, v in parts.items()}
    for name, row in res["variants"].items():
        total = [sum(x) for x in zip(parts["encode"], parts["bm25"], dense[name], fetch[name], strict=True)]
        row |= {
            "hnsw_p50_ms": pct(dense[name], 50),
            "hnsw_p99_ms": pct(dense[name], 99),
            "vectors_p50_ms": pct(fetch[name], 50),
            "total_p50_ms": pct(total, 50),
            "total_p95_ms": pct(total, 95),
            "total_p99_ms": pct(total, 99),
        }
    res["load_average_at_end"] = os.getloadavg()

    print(f"\n{n} passages, {args.queries} real title queries (×{args.rounds}, interleaved), shared machine")
    print(
        f"encode p50 {res['latency_ms']['encode']['p50']:.2f} ms, BM25 p50 {res['latency_ms']['bm25']['p50']:.2f} ms\n"
    )
    print(
        f"{'M/efC':8s} {'build s':>8s} {'efS':>5s} {'R@10':>6s} {'R 10%':>6s} {'R 1%':>6s} "
        f"{'hnsw p50':>9s} {'p99':>6s} {'total p50':>10s} {'p99':>6s} {'RSS load/after MB':>18s}"
    )
    for row in res["variants"].values():
        g = res["graphs"][row["graph"]]
        rss = f"{g['rss_mb']['rss_load_mb']:.0f} / {g['rss_mb']['rss_after_queries_mb']:.0f}"
        print(
            f"{row['graph']:8s} {g['build_s']:8.0f} {row['ef_search']:5d} {row['recall@10']:6.3f} "
            f"{row['recall@10 filter 10%']:6.3f} {row['recall@10 filter 1%']:6.3f} "
            f"{row['hnsw_p50_ms']:9.2f} {row['hnsw_p99_ms']:6.2f} {row['total_p50_ms']:10.2f} "
            f"{row['total_p99_ms']:6.2f} {rss:>18s}"
        )
    out = args.out or ROOT / "results" / f"scale_{n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str), encoding="utf-8")
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
