"""The local backend: each snapshot's vectors in a FAISS store and its BM25 index (bm25s), as files of
the version folder, memory-mapped on load."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from embeddings.encoder import Vectors
from embeddings.vector_store import AnyStore, StoreParams, build_store, load_store
from qa.index.manifest import Manifest
from qa.index.passages import (
    FusedHit,
    LexicalQuery,
    Mask,
    PassageFilter,
    PassageIndex,
    PassageWrite,
    Rows,
    SnapshotRows,
)
from qa.text.bm25 import LexicalIndex

BM25_DIR = "bm25"


class LocalPassages:
    """A snapshot's passages in this process: exact or HNSW vector search and BM25 over the service's
    tokens. Filters apply as the row mask (``where`` is not needed); no fusion of its own."""

    def __init__(self, store: AnyStore, lexical: LexicalIndex) -> None:
        self.store = store
        self.lexical = lexical

    @property
    def dim(self) -> int:
        return self.store.dim

    def __len__(self) -> int:
        return len(self.store)

    def dense_search(
        self, queries: Vectors, k: int, allowed: Mask | None = None, where: PassageFilter | None = None
    ) -> list[Rows]:
        return self.store.search(queries, k, allowed)

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
        return self.store.vectors(rows)

    def knows(self, token: str) -> bool:
        return self.lexical.knows(token)

    def vocabulary(self) -> list[str]:
        return self.lexical.vocabulary()


class LocalBackend:
    """Snapshots whose passages are files of their own version folder."""

    collection = None

    def __init__(self, params: StoreParams | None = None) -> None:
        self.params = params

    def open(self, version: Path, manifest: Manifest, rows: SnapshotRows) -> LocalPassages:
        store = load_store(version, int(manifest.key.dense.dim), self.params)
        return LocalPassages(store, LexicalIndex.load(version / BM25_DIR, len(rows.chunks)))

    def write(self, version: Path, previous: PassageIndex | None, change: PassageWrite) -> LocalPassages:
        vectors = change.vectors
        if change.reused:
            if previous is None:
                raise ValueError("passages are carried over from a previous snapshot that is not given")
            vectors[[new for new, _ in change.reused]] = previous.vectors([old for _, old in change.reused])
        passages = LocalPassages(
            build_store(vectors, vectors.shape[1], self.params), LexicalIndex.build(change.rows.tokens)
        )
        passages.store.save(version)
        passages.lexical.save(version / BM25_DIR)
        return passages

    def published(self, previous: PassageIndex | None, current: PassageIndex) -> None:
        """Nothing to retire: the previous snapshot's files go with its version folder."""

    def close(self) -> None:
        """Nothing to release."""
