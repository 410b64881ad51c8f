"""The seam between the index and the engines that hold its passages.

A snapshot of the index is two parts. The tables (articles, chunks, tokens, the manifest) are local
files and the source of every citation; they are the same whichever engine is configured. The passages
(each chunk's vector and what lexical search needs) live in a ``PassageIndex``: local FAISS + BM25 files
in the version folder, or a Milvus collection. Row i of a ``PassageIndex`` is chunk i of its snapshot.

A ``PassageBackend``, made by ``passage_backend`` from ``vector_store.backend``, opens a snapshot's
passages and writes a new snapshot's; it owns whatever connection the engine needs. Nothing outside the
two implementations (``local_passages``, ``milvus_passages``) knows which one is in use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from qa.embeddings.encoder import Vectors
from qa.records import Article, Chunk

if TYPE_CHECKING:
    from qa.config import VectorStoreSettings
    from qa.index.manifest import Manifest

Rows = list[tuple[int, float]]
"""(row, score) pairs, best first."""

Mask = npt.NDArray[np.bool_]


class PassageFilter(Protocol):
    """A filter on the articles a search may return (``qa.engine.Filters`` is one)."""

    @property
    def doc_ids(self) -> tuple[str, ...] | None: ...
    @property
    def date_from(self) -> str | None: ...
    @property
    def date_to(self) -> str | None: ...


@dataclass(frozen=True)
class LexicalQuery:
    """One lexical search: the question's text (for an engine with its own analyser) and the service's
    tokens of it (jieba words, character pairs, alias spellings) for one that indexes those tokens."""

    text: str
    tokens: tuple[str, ...]


@dataclass(frozen=True)
class FusedHit:
    """A passage found by a search fused inside the engine, with its vector (for grounding)."""

    row: int
    score: float
    vector: Vectors


class PassageIndex(Protocol):
    """One snapshot's passages. Searches take the filter twice: ``allowed``, a mask over the rows, which
    every implementation honours, and ``where``, the same filter as fields, for an engine that filters
    inside its search (then the mask only re-checks the hits)."""

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def dense_search(
        self, queries: Vectors, k: int, allowed: Mask | None = None, where: PassageFilter | None = None
    ) -> list[Rows]:
        """The ``k`` nearest passages of each query vector (inner product of normalised vectors)."""
        ...

    def lexical_search(
        self,
        queries: Sequence[LexicalQuery],
        k: int,
        allowed: Mask | None = None,
        where: PassageFilter | None = None,
    ) -> list[Rows]:
        """The ``k`` best BM25 passages of each query."""
        ...

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
        """Dense and lexical search fused by (unweighted) reciprocal rank inside the engine, best first;
        None when the engine does not fuse, and the caller fuses the two lists itself."""
        ...

    def vectors(self, rows: Sequence[int]) -> Vectors:
        """The rows' vectors, in order."""
        ...

    def knows(self, token: str) -> bool:
        """Whether any passage holds ``token``."""
        ...

    def document_frequency(self, token: str) -> int:
        """How many passages hold ``token``."""
        ...


@dataclass(frozen=True)
class SegmentRows:
    """One segment of a snapshot: where its files are, how many rows it stores and which of them the
    snapshot keeps (the others belong to deleted or replaced articles)."""

    name: str
    folder: Path
    size: int
    live: Mask | None  # None: every row

    @property
    def count(self) -> int:
        """How many of its rows are in the snapshot."""
        return self.size if self.live is None else int(self.live.sum())


@dataclass(frozen=True)
class SnapshotRows:
    """The rows of a snapshot, as its tables describe them: what a backend needs to open its passages.
    The rows are the live rows of each segment in turn."""

    chunks: Sequence[Chunk]
    hashes: Mapping[str, str]  # doc_id → the article version's hash
    tokens: Sequence[Sequence[str]]
    segments: Sequence[SegmentRows]


@dataclass(frozen=True)
class PassageWrite:
    """A new segment's passages, as a write hands them to the backend before it seals the segment.

    ``rows`` is the new snapshot; the segment's rows are its rows ``first_row`` to ``first_row +
    segment.size``. ``vectors`` has a row per segment row; the rows of passages embedded now (the keys of
    ``texts``, snapshot rows) are filled. The others are carried over from the previous snapshot, whose
    rows ``carried`` gives as (row of the segment, row there)."""

    rows: SnapshotRows
    segment: SegmentRows
    first_row: int
    articles: Mapping[str, Article]
    texts: dict[int, str]  # snapshot row → the passage text that was embedded (context line and text)
    vectors: Vectors
    carried: Sequence[tuple[int, int]]


class PassageBackend(Protocol):
    """Where the passages of every snapshot live; one per engine, closed with it."""

    @property
    def collection(self) -> str | None:
        """The remote collection holding the passages, recorded in the index key; None for local files."""
        ...

    def open(
        self, version: Path, manifest: Manifest, rows: SnapshotRows, previous: PassageIndex | None = None
    ) -> PassageIndex:
        """The passages of the snapshot ``rows`` describes (``version``, published or about to be).
        ``previous``, a snapshot opened before, shares what it has of the same segments. ValueError,
        OSError or IndexStoreError when they are missing or do not fit ``rows``."""
        ...

    def write(self, previous: PassageIndex | None, change: PassageWrite) -> None:
        """Make a new segment's passages findable (local files go into its folder, not yet sealed);
        called before the snapshot naming it is published. ``previous`` holds the carried rows."""
        ...

    def published(self, previous: PassageIndex | None, current: PassageIndex) -> None:
        """Called after the snapshot of ``current`` is published: retire what no snapshot names now.
        Never raises for a failure the next build can repair."""
        ...

    def close(self) -> None: ...


def passage_backend(settings: VectorStoreSettings, dim: int, root: Path) -> PassageBackend:
    """The backend ``vector_store.backend`` names; a relative Milvus Lite path is taken from ``root``."""
    if settings.backend == "milvus":
        from qa.index.milvus_passages import MilvusBackend  # pymilvus loads only for this backend

        uri = settings.uri if "://" in settings.uri else str((root / settings.uri).resolve())
        return MilvusBackend(uri, settings.collection, dim, token=settings.token)
    from qa.index.local_passages import LocalBackend

    return LocalBackend(settings.store_params())
