"""Approximate search for large corpora: an HNSW graph over 8-bit codes, refined with fp16 vectors.

Row i is passage i, as in every store. Files: ``vectors.f16.npy`` (float16, memory-mapped on load; it
serves ``vectors()``, the exact re-scoring of the graph's candidates and exact search under selective
filters) and ``hnsw.faiss`` (the graph and its SQ8 codes, read with ``IO_FLAG_MMAP``). Every file is
written to a temporary file, fsynced and renamed; ``store.json`` (kind, size, parameters) comes last.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from qa.embeddings.encoder import Vectors
from qa.embeddings.npyio import PreadArray, load_npy

F16_FILE = "vectors.f16.npy"
HNSW_FILE = "hnsw.faiss"
STORE_FILE = "store.json"  # the store's kind, size and parameters; written last
TRAIN_SAMPLE = 100_000  # SQ8 learns a per-dimension range; a sample is as good as everything
EXACT_CHUNK = 65_536  # rows scored at once by the exact fallback
MAX_EF = 8192

Hits = list[list[tuple[int, float]]]

# faiss's OpenMP threads as the process started (every core it may use, or OMP_NUM_THREADS).
ALL_THREADS = faiss.omp_get_max_threads()


def use_threads(threads: int) -> None:
    """OpenMP threads for the calling thread's next faiss calls; 0: every core (``ALL_THREADS``).

    OpenMP keeps this per thread, and a service searches from many threads, so every search and build
    sets its own. One thread per search is right for a server: its requests already keep every core
    busy, and a second OpenMP thread that must wait for a busy core makes one exact search over 75k
    passages six times slower (28 against 4.9 ms on this 2-core machine)."""
    faiss.omp_set_num_threads(threads if threads > 0 else ALL_THREADS)


@dataclass(frozen=True)
class HnswParams:
    m: int = 32  # graph degree: more is better recall, more memory (m * 8 bytes a row) and slower builds
    ef_construction: int = 40
    ef_search: int = 2048  # candidates explored per query (recall: benchmarks/scale.py)
    exact_filter_rows: int = 50_000  # a filter allowing at most this many rows is searched exactly


def as_rows(vectors: Vectors, dim: int) -> Vectors:
    """``vectors`` as contiguous float32 rows of width ``dim``; ValueError for any other shape."""
    rows: Vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {rows.shape}")
    return rows


def write_npy_atomic(path: Path, array: npt.NDArray[np.generic]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_index_atomic(path: Path, index: Any) -> None:
    """``faiss.write_index`` writes in place; write a temporary file, fsync it, then rename."""
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def top_scored(
    rows: npt.NDArray[np.int64], scores: npt.NDArray[np.float32], k: int
) -> list[tuple[int, float]]:
    """The ``k`` best of ``rows`` by ``scores``, best first."""
    if rows.size > k:
        keep = np.argpartition(-scores, k - 1)[:k]
        rows, scores = rows[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    return [(int(rows[i]), float(scores[i])) for i in order]


class HnswStore:
    """HNSW (SQ8 codes) for the candidates, exact fp16 inner products for their final scores."""

    kind = "hnsw"

    def __init__(
        self,
        dim: int,
        params: HnswParams,
        index: Any = None,
        f16: Vectors | None = None,
        threads: int = 1,
        reader: PreadArray | None = None,
    ) -> None:
        self._dim = dim
        self.params = params
        self.threads = threads  # OpenMP threads per search (use_threads)
        if index is None:
            index = faiss.index_factory(dim, f"HNSW{params.m},SQ8", faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params.ef_construction
        self._index = index
        self._f16: Vectors = np.zeros((0, dim), np.float16) if f16 is None else f16
        self._reader = reader  # reads rows of the mapped f16 file without mapping them (a loaded store)

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, vectors: Vectors) -> None:
        vectors = as_rows(vectors, self._dim)
        if not len(vectors):
            return
        use_threads(0)  # a build uses every core
        if not self._index.is_trained:
            step = max(1, len(vectors) // TRAIN_SAMPLE)
            self._index.train(np.ascontiguousarray(vectors[::step]))
        self._index.add(vectors)
        self._f16 = np.concatenate([self._f16, vectors.astype(np.float16)])
        self._reader = None  # the rows are in memory now

    def vectors(self, rows: Sequence[int]) -> Vectors:
        ids = np.asarray(rows, dtype=np.int64)
        if self._reader is not None:
            return np.asarray(self._reader.rows(ids), dtype=np.float32)
        return np.asarray(self._f16[ids], dtype=np.float32)

    def _exact(self, query: Vectors, k: int, rows: npt.NDArray[np.int64] | None) -> list[tuple[int, float]]:
        total = len(self) if rows is None else rows.size
        best_rows, best_scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
        for start in range(0, total, EXACT_CHUNK):
            stop = min(start + EXACT_CHUNK, total)
            ids = np.arange(start, stop, dtype=np.int64) if rows is None else rows[start:stop]
            scores = np.asarray(self._f16[ids], dtype=np.float32) @ query
            best_rows = np.concatenate([best_rows, ids])
            best_scores = np.concatenate([best_scores, scores])
            if best_rows.size > k:
                keep = np.argpartition(-best_scores, k - 1)[:k]
                best_rows, best_scores = best_rows[keep], best_scores[keep]
        return top_scored(best_rows, best_scores, k)

    def _refine(self, query: Vectors, ids: npt.NDArray[np.int64], k: int) -> list[tuple[int, float]]:
        ids = ids[ids >= 0]
        return top_scored(ids, self.vectors(ids.tolist()) @ query, k) if ids.size else []

    def search(self, queries: Vectors, k: int, allowed: npt.NDArray[np.bool_] | None = None) -> Hits:
        total = len(self)
        queries = np.ascontiguousarray(queries, np.float32)
        if total == 0 or k <= 0:
            return [[] for _ in range(len(queries))]
        k = min(k, total)
        fetch = min(total, max(2 * k, 50))
        ef = max(self.params.ef_search, fetch)
        selector = None
        if allowed is not None:
            rows = np.flatnonzero(allowed).astype(np.int64)
            if rows.size <= max(self.params.exact_filter_rows, fetch):
                return [self._exact(q, k, rows) for q in queries]
            bitmap = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(total, faiss.swig_ptr(bitmap))
            ef = min(MAX_EF, ef * math.ceil(total / rows.size))
        else:
            rows = None
        params = faiss.SearchParametersHNSW(efSearch=ef)  # type: ignore[attr-defined]
        if selector is not None:
            params.sel = selector
        use_threads(self.threads)
        _, ids = self._index.search(queries, fetch, params=params)
        hits = [self._refine(q, row_ids, k) for q, row_ids in zip(queries, ids, strict=True)]
        # The graph may miss allowed rows behind a filter: exact search is what users expect then.
        return [
            h if len(h) >= k or rows is None else self._exact(q, k, rows)
            for q, h in zip(queries, hits, strict=True)
        ]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        write_npy_atomic(directory / F16_FILE, np.ascontiguousarray(self._f16))
        write_index_atomic(directory / HNSW_FILE, self._index)
        meta = {"kind": self.kind, "dim": self.dim, "count": len(self), "hnsw": asdict(self.params)}
        write_json_atomic(directory / STORE_FILE, meta)

    @classmethod
    def load(cls, directory: Path, dim: int, count: int, params: HnswParams, threads: int = 1) -> HnswStore:
        f16 = load_npy(directory / F16_FILE, mmap_mode="r", scattered=True)
        if f16.dtype != np.float16 or f16.shape != (count, dim):
            raise ValueError(
                f"{directory / F16_FILE} holds {f16.dtype} {f16.shape}, expected float16 ({count}, {dim})"
            )
        try:
            index = faiss.read_index(str(directory / HNSW_FILE), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError as exc:
            raise ValueError(f"{directory / HNSW_FILE} cannot be read (truncated or damaged): {exc}") from exc
        if index.d != dim or index.ntotal != count:
            raise ValueError(
                f"{directory / HNSW_FILE} holds {index.ntotal} × {index.d}, expected {count} × {dim}"
            )
        return cls(dim, params, index, f16, threads, PreadArray(directory / F16_FILE, f16))
