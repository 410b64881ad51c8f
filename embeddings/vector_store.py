"""The VectorStore protocol, its FAISS backends and the factory that picks one by corpus size.

Row i of a store is passage i of the index; vectors are L2-normalised, scores are inner products.
Up to ``flat_max_passages`` rows: exact search (``vectors.npy``, float32). Above: an approximate index
(``qa.embeddings.ann``). Every file is written to a temporary file, fsynced and renamed into place, and
``store.json`` (the kind, size and parameters) last; a folder without it holds a flat store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import faiss
import numpy as np
import numpy.typing as npt

from qa.embeddings.ann import (
    STORE_FILE,
    HnswParams,
    HnswStore,
    as_rows,
    top_scored,
    use_threads,
    write_json_atomic,
    write_npy_atomic,
)
from qa.embeddings.encoder import Vectors
from qa.embeddings.npyio import load_npy

VECTORS_FILE = "vectors.npy"
CODES_FETCH = 4  # candidates the 8-bit scan of a large flat store takes per result asked
CODES_MIN_FETCH = 200
INT8 = 127  # the codes and a query's are signed bytes, |x| ≤ 127
CODE_BLOCK = 65_536  # rows made into codes at once (a float copy of this many, not of the store)


class VectorStore(Protocol):
    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def add(self, vectors: Vectors) -> None: ...

    def vectors(self, rows: Sequence[int]) -> Vectors: ...

    def search(
        self, queries: Vectors, k: int, allowed: npt.NDArray[np.bool_] | None = None
    ) -> list[list[tuple[int, float]]]: ...

    def save(self, directory: Path) -> None: ...


@dataclass(frozen=True)
class StoreParams:
    """Which store a build gets: exact up to ``flat_max_passages`` rows, else ``ann`` with ``hnsw``."""

    flat_max_passages: int = 200_000
    ann: Literal["hnsw"] = "hnsw"
    hnsw: HnswParams = field(default_factory=HnswParams)
    search_threads: int = 1  # OpenMP threads per search; 0: every core (ann.use_threads)
    flat_codes_min_passages: int = 20_000  # a flat store this large scans 8-bit codes (FaissFlatStore)


class FaissFlatStore:
    """Exact search; right for corpora up to a few hundred thousand passages.

    From ``codes_min_rows`` rows (0: never) the scan reads signed 8-bit codes of the vectors instead of
    the float32 vectors (a quarter of the bytes: 115 MB a question at 75k passages in float32) for
    ``CODES_FETCH`` times the candidates asked, and those are scored exactly on the float32 vectors, the
    vectors staying in their mapped file instead of a copy in faiss's memory. A code is the vector times
    one scale for the whole store (``INT8`` over its largest coordinate), rounded; the query is rounded
    the same way with its own scale, and faiss scores the pair as bytes (``QT_8bit_direct_signed``),
    which its SIMD kernels do faster than SQ8's per-dimension decoding (6.1 → 4.3 ms a search over 75k
    vectors, ``benchmarks/flat_codes.py``, interleaved). The codes only pick candidates: a row whose code
    ranks it below that many would be missed (none was on e5's vectors of the inews dev corpus, 200 title
    queries: recall@50 1.0 against the float32 scan)."""

    kind = "flat"

    def __init__(self, dim: int, threads: int = 1, codes_min_rows: int = 0) -> None:
        self._dim = dim
        self.threads = threads  # OpenMP threads per search (ann.use_threads)
        self.codes_min_rows = codes_min_rows
        self._rows: list[Vectors] = []
        self._count = 0
        self._searcher: Any = None  # built on first search after an add: IndexFlatIP or the int8 codes

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return self._count

    @property
    def uses_codes(self) -> bool:
        return 0 < self.codes_min_rows <= self._count

    def add(self, vectors: Vectors) -> None:
        vectors = as_rows(vectors, self._dim)
        if len(vectors):
            self._rows.append(vectors)
            self._count += len(vectors)
            self._searcher = None

    def _all(self) -> Vectors:
        if len(self._rows) != 1:
            self._rows = [np.concatenate(self._rows) if self._rows else np.zeros((0, self._dim), np.float32)]
        return self._rows[0]

    def _index(self) -> Any:
        if self._searcher is None:
            rows = self._all()
            index: Any
            if self.uses_codes:
                index = codes_index(rows)
            else:
                index = faiss.IndexFlatIP(self._dim)
                index.add(rows)
            self._searcher = index
        return self._searcher

    def vectors(self, rows: Sequence[int]) -> Vectors:
        return np.asarray(self._all()[list(rows)], dtype=np.float32)

    def search(
        self, queries: Vectors, k: int, allowed: npt.NDArray[np.bool_] | None = None
    ) -> list[list[tuple[int, float]]]:
        total = len(self)
        if total == 0 or k <= 0:
            return [[] for _ in range(len(queries))]
        params = None
        if allowed is not None:
            ids = np.flatnonzero(allowed).astype(np.int64)
            if ids.size == 0:
                return [[] for _ in range(len(queries))]
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(ids))  # type: ignore[call-arg]
        index = self._index()
        queries = np.ascontiguousarray(queries, np.float32)
        k = min(k, total)
        use_threads(self.threads)
        if not self.uses_codes:
            scores, rows = index.search(queries, k, params=params)
            return [
                [(int(r), float(s)) for r, s in zip(row_ids, row_scores, strict=True) if r >= 0]
                for row_ids, row_scores in zip(rows, scores, strict=True)
            ]
        fetch = min(total, max(CODES_FETCH * k, CODES_MIN_FETCH))
        top = np.abs(queries).max(axis=1, keepdims=True)
        _, rows = index.search(int8_codes(queries, INT8 / np.where(top > 0, top, 1.0)), fetch, params=params)
        vectors = self._all()
        hits = []
        for query, found in zip(queries, rows, strict=True):
            found = found[found >= 0]
            hits.append(top_scored(found, vectors[found] @ query, k) if found.size else [])
        return hits

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        write_npy_atomic(directory / VECTORS_FILE, self._all())
        write_json_atomic(directory / STORE_FILE, {"kind": self.kind, "dim": self.dim, "count": len(self)})

    @classmethod
    def load(cls, directory: Path, dim: int, threads: int = 1, codes_min_rows: int = 0) -> FaissFlatStore:
        """The store over the mapped ``vectors.npy``, its search index built now (not by the first
        question)."""
        path = directory / VECTORS_FILE
        vectors = load_npy(path, mmap_mode="r", scattered=True)  # searches re-score a few hundred rows
        if vectors.ndim != 2 or vectors.shape[1] != dim:
            raise ValueError(f"{path} holds shape {vectors.shape}, expected (n, {dim})")
        store = cls(dim, threads, codes_min_rows)
        store.add(np.asarray(vectors))
        if store.uses_codes:
            # Made from a mapping of their own, unmapped once read: read through the one kept, every
            # vector would be resident in the process from the start (115 MB at 75k passages), not only
            # the pages searches come to read.
            whole = load_npy(path, mmap_mode="r")
            store._searcher = codes_index(np.asarray(whole))
            del whole
        else:
            store._index()
        return store


def codes_index(rows: Vectors) -> Any:
    """The signed 8-bit codes of ``rows`` (one scale for them all: ``INT8`` over their largest
    coordinate) in a faiss index that scores them as bytes; read a block at a time."""
    index = faiss.IndexScalarQuantizer(
        rows.shape[1], faiss.ScalarQuantizer.QT_8bit_direct_signed, faiss.METRIC_INNER_PRODUCT
    )
    top = max(
        max(float(block.max()), -float(block.min()))
        for block in (rows[i : i + CODE_BLOCK] for i in range(0, len(rows), CODE_BLOCK))
    )
    scale = INT8 / top if top > 0 else 1.0
    for start in range(0, len(rows), CODE_BLOCK):
        index.add(int8_codes(rows[start : start + CODE_BLOCK], scale))
    return index


def int8_codes(vectors: Vectors, scale: float | npt.NDArray[np.floating[Any]]) -> Vectors:
    """``vectors`` times ``scale`` (one, or one per row), rounded to integers in ±``INT8``: what faiss's
    ``QT_8bit_direct_signed`` stores as a byte, still as float32, which faiss takes."""
    codes = np.multiply(vectors, scale, dtype=np.float32)  # a new array: rounded and clipped in place
    np.rint(codes, out=codes)
    np.clip(codes, -INT8, INT8, out=codes)
    return np.ascontiguousarray(codes)


STORES = {"faiss-flat": FaissFlatStore, "faiss-hnsw": HnswStore}
AnyStore = FaissFlatStore | HnswStore


def build_store(vectors: Vectors, dim: int, params: StoreParams | None = None) -> AnyStore:
    """A store holding ``vectors``: exact when they are few, approximate above the threshold."""
    params = params or StoreParams()
    exact = len(vectors) <= params.flat_max_passages
    threads = params.search_threads
    store: AnyStore = (
        FaissFlatStore(dim, threads, params.flat_codes_min_passages)
        if exact
        else HnswStore(dim, params.hnsw, threads=threads)
    )
    store.add(vectors)
    return store


def load_store(directory: Path, dim: int, params: StoreParams | None = None) -> AnyStore:
    """The store saved in ``directory``, of the kind its ``store.json`` names (flat without one).
    Search-time settings (``ef_search``, ``exact_filter_rows``) come from ``params`` when given, so a
    config change applies without a rebuild; the graph's own (``m``, ``ef_construction``) are the
    build's. ValueError when a file is missing, truncated or does not match the others."""
    path = directory / STORE_FILE
    threads = params.search_threads if params is not None else StoreParams.search_threads
    codes = params.flat_codes_min_passages if params is not None else StoreParams.flat_codes_min_passages
    if not path.exists():
        return FaissFlatStore.load(directory, dim, threads, codes)
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("dim") != dim:
        raise ValueError(f"{path} says dimension {meta.get('dim')}, expected {dim}")
    if meta.get("kind") == "flat":
        store = FaissFlatStore.load(directory, dim, threads, codes)
        if len(store) != meta.get("count"):
            raise ValueError(
                f"{directory / VECTORS_FILE} holds {len(store)} rows, {path} says {meta.get('count')}"
            )
        return store
    if meta.get("kind") == "hnsw":
        built = HnswParams(**meta["hnsw"])
        if params is not None:
            built = replace(
                built, ef_search=params.hnsw.ef_search, exact_filter_rows=params.hnsw.exact_filter_rows
            )
        return HnswStore.load(directory, dim, int(meta["count"]), built, threads)
    raise ValueError(f"{path}: unknown store kind {meta.get('kind')!r}")
