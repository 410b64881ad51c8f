"""The VectorStore protocol and its FAISS backend (exact inner product over L2-normalised rows).

Row i of the store is passage i of the index. The store is saved as plain files: ``vectors.npy``
(float32, memory-mappable), written to a temporary file, fsynced and renamed into place.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np
import numpy.typing as npt

from embeddings.encoder import Vectors
from embeddings.npyio import load_npy

VECTORS_FILE = "vectors.npy"


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


def write_npy_atomic(path: Path, array: npt.NDArray[np.generic]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class FaissFlatStore:
    """Exact search; right for corpora up to a few hundred thousand passages."""

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._index = faiss.IndexFlatIP(dim)
        self._rows: list[Vectors] = []

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, vectors: Vectors) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self._dim:
            raise ValueError(f"expected vectors of shape (n, {self._dim}), got {vectors.shape}")
        if len(vectors):
            self._index.add(vectors)
            self._rows.append(vectors)

    def _all(self) -> Vectors:
        if len(self._rows) != 1:
            self._rows = [np.concatenate(self._rows) if self._rows else np.zeros((0, self._dim), np.float32)]
        return self._rows[0]

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
        scores, rows = self._index.search(
            np.ascontiguousarray(queries, np.float32), min(k, total), params=params
        )
        return [
            [(int(r), float(s)) for r, s in zip(row_ids, row_scores, strict=True) if r >= 0]
            for row_ids, row_scores in zip(rows, scores, strict=True)
        ]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        write_npy_atomic(directory / VECTORS_FILE, self._all())

    @classmethod
    def load(cls, directory: Path, dim: int) -> FaissFlatStore:
        vectors = load_npy(directory / VECTORS_FILE, mmap_mode="r")
        if vectors.ndim != 2 or vectors.shape[1] != dim:
            raise ValueError(f"{directory / VECTORS_FILE} holds shape {vectors.shape}, expected (n, {dim})")
        store = cls(dim)
        store.add(np.asarray(vectors))
        return store


STORES = {"faiss-flat": FaissFlatStore}
