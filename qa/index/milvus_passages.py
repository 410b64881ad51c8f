"""The Milvus backend: every snapshot's passages in one Milvus collection, under keys the snapshot names.

The local tables (articles, chunks, tokens, manifest) stay the source of citations; Milvus holds each
passage's vector and BM25 text under a key naming one passage of one article version. A build upserts
the passages of new and changed articles before it publishes its snapshot and deletes those of replaced
and removed articles after, so a reader on either snapshot finds every passage it knows, and skips hits
whose key its snapshot does not know (another version's passages).

Milvus's errors (``VectorStoreError``) become ``IndexStoreError`` here, so the service sees one error for
an unavailable index whichever backend holds it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from qa.embeddings.encoder import Vectors
from qa.embeddings.errors import VectorStoreError
from qa.embeddings.milvus_store import Hits, MilvusStore, Passage, filter_expr
from qa.errors import IndexStoreError
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
from qa.records import Article, Chunk
from qa.text.normalize import fold

log = logging.getLogger(__name__)


@contextmanager
def translated() -> Iterator[None]:
    """Milvus's failures as the index's: IndexStoreError (the HTTP edge answers 503 + Retry-After)."""
    try:
        yield
    except VectorStoreError as exc:
        raise IndexStoreError(str(exc)) from exc


def passage_key(doc_id: str, digest: str, chunk: Chunk) -> str:
    """Names a passage of one version of one article: a replaced article's passages get new keys."""
    owner = hashlib.sha256(f"{doc_id}\0{digest}".encode()).hexdigest()[:24]
    return f"{owner}:{chunk.start}:{chunk.end}"


def snapshot_keys(chunks: Sequence[Chunk], hashes: Mapping[str, str]) -> list[str]:
    return [passage_key(c.doc_id, hashes[c.doc_id], c) for c in chunks]


def to_passage(key: str, chunk: Chunk, article: Article, text: str) -> Passage:
    return Passage(
        key=key,
        doc_id=chunk.doc_id,
        date=article.date or "",
        section=chunk.section.value,
        start=chunk.start,
        end=chunk.end,
        text=fold(text),
    )


def expr(where: PassageFilter | None) -> str:
    if where is None:
        return ""
    return filter_expr(where.doc_ids, where.date_from, where.date_to)


def bm25_text(query: LexicalQuery) -> str:
    """The BM25 query sent to Milvus: the folded question (Milvus's Chinese analyzer tokenises it), plus
    the words of the local tokens it does not already hold (alias spellings, translated names)."""
    text = fold(query.text)
    extra = [t for t in dict.fromkeys(query.tokens) if not t.startswith("#") and t not in text]
    return " ".join([text, *extra])


class MilvusPassages:
    """One snapshot's view of the collection: keys ↔ rows. Hits whose key this snapshot does not know,
    or whose row ``allowed`` excludes, are dropped. BM25 runs in Milvus; which tokens passages hold, and
    how many (for abstention and the reranker's idf), come from the snapshot's own tokens."""

    def __init__(self, store: MilvusStore, keys: list[str], token_lists: Iterable[Sequence[str]]) -> None:
        self.store = store
        self.keys = keys
        self.row_of = {key: row for row, key in enumerate(keys)}
        self._df: Counter[str] = Counter()
        for tokens in token_lists:
            self._df.update(set(tokens))

    @property
    def dim(self) -> int:
        return self.store.dim

    def __len__(self) -> int:
        return len(self.keys)

    def knows(self, token: str) -> bool:
        return token in self._df

    def document_frequency(self, token: str) -> int:
        return self._df.get(token, 0)

    def vectors(self, rows: Sequence[int]) -> Vectors:
        """The rows' vectors; zeros for a passage a newer snapshot's build has deleted since this one was
        loaded (its cosine 0 never supports an answer)."""
        keys = [self.keys[r] for r in rows]
        with translated():
            found = self.store.vectors(keys)
        out = np.zeros((len(keys), self.dim), np.float32)
        for i, key in enumerate(keys):
            if key in found:
                out[i] = found[key]
        return out

    def _rows(self, hits: Hits, allowed: Mask | None) -> Rows:
        out = []
        for key, score in hits:
            row = self.row_of.get(key)
            if row is not None and (allowed is None or allowed[row]):
                out.append((row, score))
        return out

    def dense_search(
        self, queries: Vectors, k: int, allowed: Mask | None = None, where: PassageFilter | None = None
    ) -> list[Rows]:
        with translated():
            found = self.store.dense_search(queries, k, expr(where))
        return [self._rows(h, allowed) for h in found]

    def lexical_search(
        self,
        queries: Sequence[LexicalQuery],
        k: int,
        allowed: Mask | None = None,
        where: PassageFilter | None = None,
    ) -> list[Rows]:
        with translated():
            found = self.store.lexical_search([bm25_text(q) for q in queries], k, expr(where))
        return [self._rows(h, allowed) for h in found]

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
    ) -> list[FusedHit]:
        """Dense + BM25 fused by Milvus's RRFRanker, with the hits' vectors (returned with them, so a
        concurrent delete cannot take them away in between)."""
        with translated():
            hits, vectors = self.store.hybrid_search(
                [(vector, candidates), (bm25_text(query), candidates)], k, expr(where), rrf_k=rrf_k
            )
        return [FusedHit(row, score, vectors[self.keys[row]]) for row, score in self._rows(hits, allowed)]


class MilvusBackend:
    """One connection to one collection, shared by every snapshot this engine opens."""

    def __init__(self, uri: str, collection: str, dim: int, *, token: str = "") -> None:
        self.uri, self._collection, self.dim, self._token = uri, collection, dim, token
        self._store: MilvusStore | None = None
        self._lock = threading.Lock()

    @property
    def collection(self) -> str:
        return self._collection

    @property
    def store(self) -> MilvusStore:
        """The collection, connected on first use (a Milvus Lite file starts its local server then)."""
        with self._lock:
            if self._store is None:
                with translated():
                    self._store = MilvusStore(self.uri, self._collection, self.dim, token=self._token)
            return self._store

    def open(
        self, version: Path, manifest: Manifest, rows: SnapshotRows, previous: PassageIndex | None = None
    ) -> MilvusPassages:
        keys = snapshot_keys(rows.chunks, rows.hashes)
        store = self.store
        with translated():
            held = store.count()
        if held < len(set(keys)):
            raise IndexStoreError(
                f"Milvus collection {store.collection!r} at {store.uri} holds fewer passages than the index "
                f"at {version}; run `qa index --rebuild`"
            )
        return MilvusPassages(store, keys, rows.tokens)

    def write(self, previous: PassageIndex | None, change: PassageWrite) -> None:
        """Upsert the passages embedded now (new and changed articles); the collection keeps the ones a
        segment carries over, under the same keys."""
        store, rows = self.store, change.rows
        todo = sorted(change.texts)
        passages = [
            to_passage(
                passage_key(rows.chunks[p].doc_id, rows.hashes[rows.chunks[p].doc_id], rows.chunks[p]),
                rows.chunks[p],
                change.articles[rows.chunks[p].doc_id],
                change.texts[p],
            )
            for p in todo
        ]
        vectors = change.vectors[[p - change.first_row for p in todo]] if todo else None
        with translated():
            store.upsert(passages, vectors if vectors is not None else np.zeros((0, store.dim), np.float32))
        log.info("Milvus %s: %d passages upserted", store.collection, len(passages))

    def published(self, previous: PassageIndex | None, current: PassageIndex) -> None:
        """Delete the passages the published snapshot no longer names (replaced and removed articles).
        A failure leaves only passages no snapshot names, which readers skip and the next build deletes."""
        if not isinstance(current, MilvusPassages):
            raise TypeError(f"a Milvus snapshot was expected, got {type(current).__name__}")
        old = previous.keys if isinstance(previous, MilvusPassages) else None
        try:
            with translated():
                retire(self.store, old, current.keys)
        except IndexStoreError as exc:
            log.warning("stale passages stay in Milvus until the next build: %s", exc)

    def close(self) -> None:
        """Release the connection (and stop Milvus Lite's server when this was its last user)."""
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()


def retire(store: MilvusStore, old_keys: Iterable[str] | None, live_keys: Sequence[str]) -> int:
    """Delete what the published snapshot no longer names; call it after publishing. Without the previous
    snapshot's keys (first build, rebuild), or when the collection still holds more than the snapshot
    (leftovers of a build that died between its insert and its publish), every key is checked."""
    live = set(live_keys)
    removed = _delete_stale(store, old_keys, live) if old_keys is not None else 0
    if old_keys is None or store.count() != len(live):
        removed += _delete_stale(store, store.keys(), live)
    return removed


def _delete_stale(store: MilvusStore, keys: Iterable[str], live: set[str]) -> int:
    stale = [key for key in keys if key not in live]
    if stale:
        store.delete(stale)
        log.info("Milvus %s: %d stale passages deleted", store.collection, len(stale))
    return len(stale)
