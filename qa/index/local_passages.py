"""The local backend: each segment's vectors in a FAISS store and its BM25 postings, as files of the
segment's folder, memory-mapped on load.

A snapshot searches every segment it is made of and merges the hits. Dense scores are comparable across
segments as they are (cosines); BM25 scores are too, because the statistics (passage count, document
frequencies, mean length) are summed over the live rows of all segments (``SegmentedBM25``). Segments
are immutable: a snapshot opened after a write shares the stores of the segments it has in common with
the one before, and opens only the new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from qa.embeddings.encoder import Vectors
from qa.embeddings.vector_store import AnyStore, StoreParams, build_store, load_store
from qa.index.manifest import Manifest
from qa.index.passages import (
    FusedHit,
    LexicalQuery,
    Mask,
    PassageFilter,
    PassageIndex,
    PassageWrite,
    Rows,
    SegmentRows,
    SnapshotRows,
)
from qa.text.segment_bm25 import Postings, SegmentedBM25

VECTORS_DIR = "vectors"
LEXICAL_DIR = "lexical"
Ids = npt.NDArray[np.int64]


@dataclass(frozen=True)
class _Part:
    """One segment in one snapshot: its stores, and how its rows map to the snapshot's."""

    name: str
    store: AnyStore
    postings: Postings
    live: Mask | None
    offset: int  # the snapshot row of its first live row
    local: Ids  # its live rows, in order: snapshot row offset + i is its row local[i]
    to_row: Ids  # its row → the snapshot row, -1 for a dead one

    @property
    def count(self) -> int:
        return len(self.local)

    @property
    def dead(self) -> int:
        return len(self.store) - self.count

    def search(self, queries: Vectors, k: int, allowed: Mask | None) -> list[Rows]:
        """Its hits among the snapshot rows ``allowed`` permits (their part of the mask), as snapshot rows."""
        if allowed is not None:
            mask = np.zeros(len(self.store), dtype=bool)
            mask[self.local[allowed]] = True
            found = self.store.search(queries, k, mask)
        elif self.dead:
            # A few dead rows: ask for that many more and drop them, cheaper than a selector of all rows.
            found = self.store.search(queries, min(len(self.store), k + self.dead))
        else:
            found = self.store.search(queries, k)
        to_row = self.to_row
        return [[(int(to_row[r]), s) for r, s in hits if to_row[r] >= 0][:k] for hits in found]


class LocalPassages:
    """A snapshot's passages in this process: exact or HNSW vector search and BM25 over the service's
    tokens, over every segment. Filters apply as the row mask (``where`` is not needed); no fusion."""

    def __init__(self, parts: Sequence[_Part], dim: int) -> None:
        self.parts = tuple(parts)
        self._dim = dim
        self._offsets = np.array([p.offset for p in self.parts], dtype=np.int64)
        self._size = sum(p.count for p in self.parts)
        self.lexical = SegmentedBM25([(p.postings, p.live) for p in self.parts])

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return self._size

    def dense_search(
        self, queries: Vectors, k: int, allowed: Mask | None = None, where: PassageFilter | None = None
    ) -> list[Rows]:
        merged: list[Rows] = [[] for _ in range(len(queries))]
        for part in self.parts:
            sub = None if allowed is None else allowed[part.offset : part.offset + part.count]
            if part.count == 0 or (sub is not None and not sub.any()):
                continue
            for hits, found in zip(merged, part.search(queries, k, sub), strict=True):
                hits.extend(found)
        if len(self.parts) > 1:
            merged = [sorted(hits, key=lambda hit: (-hit[1], hit[0]))[:k] for hits in merged]
        return merged

    def lexical_search(
        self,
        queries: Sequence[LexicalQuery],
        k: int,
        allowed: Mask | None = None,
        where: PassageFilter | None = None,
    ) -> list[Rows]:
        return [self.lexical.search(q.tokens, k, allowed) for q in queries]

    def hybrid_search(
        self,
        vector: Vectors,
        query: LexicalQuery,
        k: int,
        *,
        candidates: int,
        rrf_k: int,
        allowed: Mask | None = None,
        where: PassageFilter | None = None,
    ) -> list[FusedHit] | None:
        """None: the two lists are fused by the searcher, with its weights."""
        return None

    def vectors(self, rows: Sequence[int]) -> Vectors:
        out = np.zeros((len(rows), self._dim), dtype=np.float32)
        if not len(rows):
            return out
        at = np.asarray(rows, dtype=np.int64)
        owner = np.searchsorted(self._offsets, at, side="right") - 1
        for i in np.unique(owner):
            part = self.parts[int(i)]
            picked = np.flatnonzero(owner == i)
            out[picked] = part.store.vectors(part.local[at[picked] - part.offset].tolist())
        return out

    def knows(self, token: str) -> bool:
        return self.lexical.knows(token)

    def document_frequency(self, token: str) -> int:
        return self.lexical.document_frequency(token)


class LocalBackend:
    """Snapshots whose passages are files of their segments' folders."""

    collection = None

    def __init__(self, params: StoreParams | None = None) -> None:
        self.params = params

    def open(
        self, version: Path, manifest: Manifest, rows: SnapshotRows, previous: PassageIndex | None = None
    ) -> LocalPassages:
        dim = int(manifest.key.dense.dim)
        known = {p.name: p for p in previous.parts} if isinstance(previous, LocalPassages) else {}
        parts = []
        offset = 0
        for segment in rows.segments:
            part = known.get(segment.name)
            store, postings = (part.store, part.postings) if part is not None else self._load(segment, dim)
            if len(store) != segment.size or len(postings) != segment.size:
                raise ValueError(
                    f"segment {segment.folder} holds {len(store)} vectors and {len(postings)} BM25 rows, "
                    f"its tables {segment.size} passages"
                )
            live = segment.live
            local = np.arange(segment.size, dtype=np.int64) if live is None else np.flatnonzero(live)
            to_row = np.full(segment.size, -1, dtype=np.int64)
            to_row[local] = np.arange(offset, offset + len(local))
            parts.append(_Part(segment.name, store, postings, live, offset, local, to_row))
            offset += len(local)
        return LocalPassages(parts, dim)

    def _load(self, segment: SegmentRows, dim: int) -> tuple[AnyStore, Postings]:
        store = load_store(segment.folder / VECTORS_DIR, dim, self.params)
        return store, Postings.load(segment.folder / LEXICAL_DIR)

    def write(self, previous: PassageIndex | None, change: PassageWrite) -> None:
        vectors = change.vectors
        if change.carried:
            if previous is None:
                raise ValueError("passages are carried over from a previous snapshot that is not given")
            vectors[[new for new, _ in change.carried]] = previous.vectors([old for _, old in change.carried])
        folder, first = change.segment.folder, change.first_row
        build_store(vectors, vectors.shape[1], self.params).save(folder / VECTORS_DIR)
        tokens = change.rows.tokens[first : first + change.segment.size]
        Postings.build(tokens).save(folder / LEXICAL_DIR)

    def published(self, previous: PassageIndex | None, current: PassageIndex) -> None:
        """Nothing to retire: a segment's files go with its folder once no version names it."""

    def close(self) -> None:
        """Nothing to release."""
