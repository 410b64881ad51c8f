"""The candidate scan of a large flat store: float32, SQ8 codes, signed 8-bit codes, side by side.

    python benchmarks/flat_codes.py [--index DIR ...] [--synthetic 75448] [--queries 200] [--rounds 3]
                                    [--hnsw-ef 64 128 ...] [--pca 192 128 ...] [--flush]
                                    [--ivf 256/64 1024/128 ...] [--binary 1000 4000 ...]

Vectors: every live passage vector of each index (real e5 vectors when the index was built with the
model) and, with ``--synthetic N``, N vectors made from them as ``scale.py`` makes its 1M set (pairs
mixed with noise). Queries: real inews titles encoded by the service's query encoder. Each scan takes
``CODES_FETCH`` × 50 candidates (as ``FaissFlatStore`` does for the service's 50) and re-scores them on
the float32 vectors; measured per query, the variants interleaved query by query (their order
rotating), one OpenMP thread: recall@50 against the float32 scan, and the median and p99 time of one
search. ``--hnsw-ef``: also the service's own HNSW store (``HnswStore``: the configured graph over SQ8
codes, its candidates re-scored on fp16 vectors) at each of these efSearch values, one graph built
once. ``--flush``: before each search, read a buffer larger than the CPU's caches, as the rest of a
question does (a scan back to back finds its codes in the cache; in a question it reads them from
memory). ``--pca``: also signed 8-bit codes of the vectors projected on their first N principal axes
(a PCA fitted on them), scanned for the same candidates and for twice as many, re-scored on float32.
``--ivf NLIST/NPROBE``: also an inverted file of SQ8 codes (k-means over the vectors into NLIST lists,
NPROBE lists scanned), its candidates re-scored on float32. ``--binary N``: also one bit per coordinate
(the sign of the vector less the corpus mean) in a Hamming scan for N candidates, re-scored on float32.
Writes benchmarks/results/flat_codes.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from qa.config import load_settings
from qa.embeddings.ann import HnswStore
from qa.embeddings.vector_store import CODES_FETCH, INT8, int8_codes

ROOT = Path(__file__).resolve().parent
K = 50
Vectors = npt.NDArray[np.float32]


def scans(
    x: Vectors,
    hnsw_ef: Sequence[int] = (),
    pca: Sequence[int] = (),
    ivf: Sequence[str] = (),
    binary: Sequence[int] = (),
) -> dict[str, Callable[[Vectors], npt.NDArray[np.int64]]]:
    """Each variant: a query in, its top K rows out."""
    d = x.shape[1]
    flat = faiss.IndexFlatIP(d)
    flat.add(x)
    sq8 = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    sq8.train(x)
    sq8.add(x)
    signed = faiss.IndexScalarQuantizer(
        d, faiss.ScalarQuantizer.QT_8bit_direct_signed, faiss.METRIC_INNER_PRODUCT
    )
    signed.add(int8_codes(x, INT8 / float(np.abs(x).max())))
    fetch = CODES_FETCH * K

    def exact(q: Vectors) -> npt.NDArray[np.int64]:
        return np.asarray(flat.search(q[None], K)[1][0], dtype=np.int64)

    def refined(
        index: Any, prepare: Callable[[Vectors], Vectors], fetch: int = fetch
    ) -> Callable[[Vectors], Any]:
        def run(q: Vectors) -> npt.NDArray[np.int64]:
            ids = index.search(prepare(q)[None], fetch)[1][0]
            ids = ids[ids >= 0]
            return np.asarray(ids[np.argsort(-(x[ids] @ q))[:K]], dtype=np.int64)

        return run

    variants = {
        "float32": exact,
        "sq8": refined(sq8, lambda q: q),
        "int8 signed": refined(signed, lambda q: int8_codes(q, INT8 / float(np.abs(q).max()))),
    }
    for width in pca:  # signed 8-bit codes of the vectors projected on their first principal axes
        matrix = faiss.PCAMatrix(d, width)
        matrix.train(x)
        projected = matrix.apply(x)
        scale = INT8 / float(np.abs(projected).max())
        reduced = faiss.IndexScalarQuantizer(
            width, faiss.ScalarQuantizer.QT_8bit_direct_signed, faiss.METRIC_INNER_PRODUCT
        )
        reduced.add(int8_codes(projected, scale))

        def project(q: Vectors, matrix: Any = matrix) -> Vectors:
            p = matrix.apply(q[None])[0]
            return int8_codes(p, INT8 / float(np.abs(p).max()))

        for times in (1, 2):
            variants[f"pca {width} int8 x{times}"] = refined(reduced, project, fetch * times)
    for spec in ivf:  # an inverted file: k-means lists of SQ8 codes, NPROBE of them scanned
        nlist, nprobe = (int(part) for part in spec.split("/"))
        lists = faiss.IndexIVFScalarQuantizer(
            faiss.IndexFlatIP(d), d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        lists.train(x)
        lists.add(x)
        lists.nprobe = nprobe
        variants[f"ivf {nlist}/{nprobe}"] = refined(lists, lambda q: q)
    if binary:  # one bit a coordinate: the sign of the vector less the corpus mean
        mean = x.mean(axis=0)
        bits = faiss.IndexBinaryFlat(d)
        bits.add(np.packbits(x > mean, axis=1))
        hamming = _Hamming(bits, mean)
        for count in binary:
            variants[f"binary x{count}"] = refined(hamming, lambda q: q, count)
    if hnsw_ef:
        defaults = load_settings().vector_store.store_params()
        graph = HnswStore(d, defaults.hnsw)
        t = time.perf_counter()
        graph.add(x)
        faiss.omp_set_num_threads(1)  # the build used every core
        print(
            f"HNSW{defaults.hnsw.m} (efConstruction {defaults.hnsw.ef_construction}) built in "
            f"{time.perf_counter() - t:.1f} s",
            flush=True,
        )
        for ef in hnsw_ef:
            store = HnswStore(d, replace(defaults.hnsw, ef_search=ef), graph._index, graph._f16)

            def run(q: Vectors, store: HnswStore = store) -> npt.NDArray[np.int64]:
                return np.asarray([row for row, _ in store.search(q[None], K)[0]], dtype=np.int64)

            variants[f"hnsw ef {ef}"] = run
    return variants


class _Hamming:
    """A binary index searched with float queries, as ``refined`` calls every index."""

    def __init__(self, bits: Any, mean: Vectors) -> None:
        self.bits = bits
        self.mean = mean

    def search(self, queries: Vectors, k: int) -> tuple[Any, Any]:
        found: tuple[Any, Any] = self.bits.search(np.packbits(queries > self.mean, axis=1), k)
        return found


def measure(
    x: Vectors,
    qv: Vectors,
    rounds: int,
    hnsw_ef: Sequence[int] = (),
    evict: bool = False,
    pca: Sequence[int] = (),
    ivf: Sequence[str] = (),
    binary: Sequence[int] = (),
) -> dict[str, dict[str, float]]:
    variants = scans(x, hnsw_ef, pca, ivf, binary)
    # Larger than the last-level cache of the machines this runs on; read (summed) to evict what a search
    # left there.
    evicting = np.ones(64 * 2**20 // 8, dtype=np.float64) if evict else None
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}
    found: dict[str, list[set[int]]] = {n: [] for n in names}
    for r in range(rounds):
        for i, q in enumerate(qv):
            shift = (i + r) % len(names)
            for name in names[shift:] + names[:shift]:
                if evicting is not None:
                    evicting.sum()
                t = time.perf_counter()
                top = variants[name](q)
                times[name].append(time.perf_counter() - t)
                if r == 0:
                    found[name].append(set(top.tolist()))
    truth = found["float32"]
    return {
        name: {
            "recall@50": statistics.mean(len(g & t) / K for g, t in zip(found[name], truth, strict=True)),
            "min_recall@50": min(len(g & t) / K for g, t in zip(found[name], truth, strict=True)),
            "p50_ms": statistics.median(times[name]) * 1e3,
            "p99_ms": float(np.percentile(times[name], 99)) * 1e3,
        }
        for name in names
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path, action="append", help="an index in this version's format")
    parser.add_argument("--synthetic", type=int, default=0, help="also N vectors mixed from them")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--hnsw-ef", type=int, nargs="*", default=[], help="also HnswStore at these efSearch")
    parser.add_argument("--pca", type=int, nargs="*", default=[], help="also int8 codes of N principal axes")
    parser.add_argument("--ivf", nargs="*", default=[], help="also IVF-SQ8 at these NLIST/NPROBE")
    parser.add_argument("--binary", type=int, nargs="*", default=[], help="also sign bits for N candidates")
    parser.add_argument("--flush", action="store_true", help="evict the CPU's caches before each search")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "flat_codes.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import scale

    from qa.engine import Engine

    faiss.omp_set_num_threads(1)
    settings = load_settings()
    base, _ = scale.source_passages(args.index or [settings.index_dir])
    engine = Engine(settings)
    built = [engine.queries.build(t) for t in scale.queries(args.queries, args.seed)]
    qv = np.asarray(engine.encoder.encode_queries([q.dense_text for q in built]), dtype=np.float32)
    sets = {f"index vectors ({len(base)})": np.ascontiguousarray(base, dtype=np.float32)}
    if args.synthetic:
        rng = np.random.default_rng(args.seed)
        a, b = rng.integers(0, len(base), args.synthetic), rng.integers(0, len(base), args.synthetic)
        w = rng.uniform(0.55, 1.0, (args.synthetic, 1)).astype(np.float32)
        v = w * base[a] + (1 - w) * base[b] + rng.normal(0, 0.02, (args.synthetic, base.shape[1]))
        sets[f"synthetic ({args.synthetic})"] = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(
            np.float32
        )
    results: dict[str, Any] = {"queries": len(qv), "fetch": CODES_FETCH * K, "flush": args.flush, "sets": {}}
    for label, x in sets.items():
        results["sets"][label] = measure(
            x, qv, args.rounds, args.hnsw_ef, args.flush, args.pca, args.ivf, args.binary
        )
        for name, row in results["sets"][label].items():
            print(
                f"{label:28s} {name:14s} recall@50 {row['recall@50']:.4f} (min {row['min_recall@50']:.2f})"
                f"  p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
