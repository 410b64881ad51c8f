"""The index with its passages in Milvus: keys, the per-snapshot view, and the write order of a build.

The local snapshot (articles, chunks, tokens, manifest) stays the source of citations; Milvus holds each
passage's vector and BM25 text under a key naming one passage of one article version. A build inserts
the passages of new and changed articles before it publishes its snapshot and deletes the passages of
replaced and removed articles after, so a reader on either snapshot finds every passage it knows, and
skips hits whose key its snapshot does not know (another version's passages).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from embeddings import milvus_store as ms  # the module: it may still be loading (it imports qa)
from embeddings.encoder import Vectors
from qa.errors import IndexMismatchError, IndexStoreError
from qa.records import Article, Chunk
from qa.text.bm25 import LexicalIndex
from qa.text.normalize import fold

log = logging.getLogger(__name__)

Rows = list[tuple[int, float]]


class PassageFilter(Protocol):
    @property
    def doc_ids(self) -> tuple[str, ...] | None: ...
    @property
    def date_from(self) -> str | None: ...
    @property
    def date_to(self) -> str | None: ...


def passage_key(doc_id: str, digest: str, chunk: Chunk) -> str:
    """Names a passage of one version of one article: a replaced article's passages get new keys."""
    owner = hashlib.sha256(f"{doc_id}\0{digest}".encode()).hexdigest()[:24]
    return f"{owner}:{chunk.start}:{chunk.end}"


def snapshot_keys(chunks: Sequence[Chunk], hashes: dict[str, str]) -> list[str]:
    return [passage_key(c.doc_id, hashes[c.doc_id], c) for c in chunks]


def to_passage(key: str, chunk: Chunk, article: Article, text: str) -> ms.Passage:
    return ms.Passage(
        key=key,
        doc_id=chunk.doc_id,
        date=article.date or "",
        section=chunk.section.value,
        start=chunk.start,
        end=chunk.end,
        text=fold(text),
    )


class Vocabulary(LexicalIndex):
    """The lexical side of a Milvus-backed snapshot: BM25 runs in Milvus; this only knows the corpus's
    tokens (for abstention and name variants)."""

    def __init__(self, token_lists: Iterable[Sequence[str]]) -> None:
        words: set[str] = set()
        size = 0
        for tokens in token_lists:
            words.update(tokens)
            size += 1
        super().__init__(None, size)
        self._words = words

    def vocabulary(self) -> list[str]:
        return sorted(self._words)

    def knows(self, token: str) -> bool:
        return token in self._words

    def scores(self, tokens: Sequence[str]) -> npt.NDArray[np.float32]:
        raise NotImplementedError("BM25 of a Milvus-backed index runs in Milvus (MilvusPassages)")

    def search(
        self, tokens: Sequence[str], k: int, allowed: npt.NDArray[np.bool_] | None = None
    ) -> list[tuple[int, float]]:
        raise NotImplementedError("BM25 of a Milvus-backed index runs in Milvus (MilvusPassages)")

    def save(self, directory: Path) -> None:
        """Nothing to save: the tokens are in the snapshot, the BM25 index in Milvus."""


class MilvusPassages:
    """One snapshot's view of the collection: keys ↔ rows. Satisfies the VectorStore protocol for reads;
    hits whose key this snapshot does not know, or whose row ``allowed`` excludes, are dropped."""

    def __init__(self, store: ms.MilvusStore, keys: list[str]) -> None:
        self.store = store
        self.keys = keys
        self.row_of = {key: row for row, key in enumerate(keys)}

    @property
    def dim(self) -> int:
        return self.store.dim

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, vectors: Vectors) -> None:
        raise NotImplementedError("passages are written to Milvus by the index builder (milvus_sync.publish)")

    def save(self, directory: Path) -> None:
        """Nothing to save: the vectors live in Milvus."""

    def vectors(self, rows: Sequence[int]) -> Vectors:
        """The rows' vectors; zeros for a passage a newer snapshot's build has deleted since this one was
        loaded (its cosine 0 never supports an answer)."""
        keys = [self.keys[r] for r in rows]
        found = self.store.vectors(keys)
        out = np.zeros((len(keys), self.dim), np.float32)
        for i, key in enumerate(keys):
            if key in found:
                out[i] = found[key]
        return out

    def _rows(self, hits: ms.Hits, allowed: npt.NDArray[np.bool_] | None) -> Rows:
        out = []
        for key, score in hits:
            row = self.row_of.get(key)
            if row is not None and (allowed is None or allowed[row]):
                out.append((row, score))
        return out

    def search(
        self,
        queries: Vectors,
        k: int,
        allowed: npt.NDArray[np.bool_] | None = None,
        where: PassageFilter | None = None,
    ) -> list[Rows]:
        return [self._rows(h, allowed) for h in self.store.dense_search(queries, k, expr(where))]

    def lexical_search(
        self,
        texts: Sequence[str],
        k: int,
        allowed: npt.NDArray[np.bool_] | None = None,
        where: PassageFilter | None = None,
    ) -> list[Rows]:
        return [self._rows(h, allowed) for h in self.store.lexical_search(texts, k, expr(where))]

    def hybrid_search(
        self,
        vector: Vectors,
        text: str,
        k: int,
        *,
        candidates: int,
        rrf_k: int,
        allowed: npt.NDArray[np.bool_] | None = None,
        where: PassageFilter | None = None,
    ) -> list[tuple[int, float, Vectors]]:
        """Dense + BM25 fused by Milvus's RRFRanker: (row, fused score, vector), best first."""
        hits, vectors = self.store.hybrid_search(
            [(vector, candidates), (text, candidates)], k, expr(where), rrf_k=rrf_k
        )
        return [(row, score, vectors[self.keys[row]]) for row, score in self._rows(hits, allowed)]


def expr(where: PassageFilter | None) -> str:
    if where is None:
        return ""
    return ms.filter_expr(where.doc_ids, where.date_from, where.date_to)


def bm25_text(dense_text: str, tokens: Sequence[str]) -> str:
    """The BM25 query sent to Milvus: the folded question (Milvus's Chinese analyzer tokenises it), plus
    the words of the local tokens it does not already hold (alias spellings, translated names)."""
    text = fold(dense_text)
    extra = [t for t in dict.fromkeys(tokens) if not t.startswith("#") and t not in text]
    return " ".join([text, *extra])


def send(
    store: ms.MilvusStore,
    chunks: Sequence[Chunk],
    articles: dict[str, Article],
    hashes: dict[str, str],
    texts: dict[int, str],
    vectors: Vectors,
    tokens: Sequence[Sequence[str]],
) -> tuple[MilvusPassages, Vocabulary]:
    """Send the passages of new and changed articles (the positions in ``texts``, with their rows of
    ``vectors``) and return the new snapshot's view; call it before the snapshot is published."""
    keys = snapshot_keys(chunks, hashes)
    todo = sorted(texts)
    passages = [to_passage(keys[p], chunks[p], articles[chunks[p].doc_id], texts[p]) for p in todo]
    store.upsert(passages, vectors[todo] if todo else np.zeros((0, store.dim), np.float32))
    log.info("Milvus %s: %d passages upserted", store.collection, len(passages))
    return MilvusPassages(store, keys), Vocabulary(tokens)


def after_publish(store: ms.MilvusStore, previous: object | None, current: MilvusPassages) -> None:
    """Delete the passages the published snapshot no longer names (replaced and removed articles).
    A failure leaves only passages no snapshot names, which readers skip and the next build deletes."""
    old = previous.keys if isinstance(previous, MilvusPassages) else None
    try:
        retire(store, old, current.keys)
    except IndexStoreError as exc:
        log.warning("stale passages stay in Milvus until the next build: %s", exc)


def retire(store: ms.MilvusStore, old_keys: Iterable[str] | None, live_keys: Sequence[str]) -> int:
    """Delete what the published snapshot no longer names; call it after publishing. Without the previous
    snapshot's keys (first build, rebuild), or when the collection still holds more than the snapshot
    (leftovers of a build that died between its insert and its publish), every key is checked."""
    live = set(live_keys)
    removed = _delete_stale(store, old_keys, live) if old_keys is not None else 0
    if old_keys is None or store.count() != len(live):
        removed += _delete_stale(store, store.keys(), live)
    return removed


def holds(store: ms.MilvusStore, keys: Sequence[str]) -> bool:
    """Whether the collection can hold every passage of a snapshot (it was not dropped or replaced)."""
    return store.count() >= len(set(keys))


def _delete_stale(store: ms.MilvusStore, keys: Iterable[str], live: set[str]) -> int:
    stale = [key for key in keys if key not in live]
    if stale:
        store.delete(stale)
        log.info("Milvus %s: %d stale passages deleted", store.collection, len(stale))
    return len(stale)


def view(
    store: ms.MilvusStore | None, chunks: Sequence[Chunk], hashes: dict[str, str], *, where: str
) -> MilvusPassages:
    """A snapshot's view of the collection; IndexStoreError when there is no store or it lacks passages."""
    if store is None:
        raise IndexMismatchError(
            f"the index at {where} keeps its passages in Milvus but the configuration asks for "
            "vector_store.backend = faiss; run `qa index` to rebuild it"
        )
    keys = snapshot_keys(chunks, hashes)
    if not holds(store, keys):
        raise IndexStoreError(
            f"Milvus collection {store.collection!r} at {store.uri} holds fewer passages than the index at "
            f"{where}; run `qa index --rebuild`"
        )
    return MilvusPassages(store, keys)
