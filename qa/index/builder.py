"""Build or update the index from the corpus folder: only new or changed articles are embedded."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from embeddings.encoder import Encoder, Vectors
from qa.errors import CorpusError, IndexStoreError
from qa.index import layout
from qa.index.embed_cache import EmbeddingCache
from qa.index.manifest import Counts, IndexKey, Manifest
from qa.index.passages import PassageBackend, PassageWrite, SnapshotRows
from qa.index.search_index import SearchIndex, passage_text, read_snapshot, write_snapshot
from qa.ingest.chunker import chunk_article
from qa.ingest.loader import LoadReport
from qa.records import Article, Chunk
from qa.text.tokenize import ChineseTokenizer

log = logging.getLogger(__name__)
ENCODE_BATCH = 256


@dataclass
class BuildReport:
    articles: int = 0
    passages: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    encoded: int = 0
    skipped: list[CorpusError] = field(default_factory=list)
    seconds: float = 0.0
    version: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def article_hash(article: Article) -> str:
    payload = json.dumps([article.title, article.date, article.url, article.text], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _embed_new(
    encoder: Encoder,
    cache: EmbeddingCache,
    pending: list[tuple[str, list[int]]],
    texts: dict[int, str],
    vectors: Vectors,
    show_progress: bool,
) -> int:
    """Fill ``vectors`` for the passages of new or changed articles, from the cache or by embedding
    them in batches; every article is cached as soon as its batch is done. Returns how many were embedded."""
    todo: list[tuple[str, list[int]]] = []
    for digest, positions in pending:
        cached = cache.get(digest, len(positions))
        if cached is None:
            todo.append((digest, positions))
        elif positions:
            vectors[positions] = cached
    total = sum(len(positions) for _, positions in todo)
    with tqdm(total=total, desc="embedding passages", unit="passage", disable=not show_progress) as bar:
        batch: list[tuple[str, list[int]]] = []
        size = 0
        for i, item in enumerate(todo):
            batch.append(item)
            size += len(item[1])
            if size < ENCODE_BATCH and i + 1 < len(todo):
                continue
            order = [p for _, positions in batch for p in positions]
            if order:
                vectors[order] = encoder.encode_passages([texts[p] for p in order])
            for digest, positions in batch:
                cache.put(digest, vectors[positions])
            bar.update(size)
            batch, size = [], 0
    return total


def _previous(
    index_dir: Path, key: IndexKey, rebuild: bool, backend: PassageBackend
) -> tuple[SearchIndex | None, bool]:
    """The live index to reuse vectors from (None if unusable), and whether its BM25 tokens are reusable."""
    if rebuild:
        return None, False
    try:
        version = layout.current_version(index_dir)
        if version is None:
            return None, False
        manifest = Manifest.from_json(layout.read_manifest(version, verify=True))
        if manifest.key.dense != key.dense:
            log.info("model or chunking changed since the last build: every passage is embedded again")
            return None, False
        return read_snapshot(version, manifest, backend), manifest.key.lexical == key.lexical
    except IndexStoreError as exc:
        log.warning("not reusing the existing index: %s", exc)
        return None, False


def build_index(
    corpus: LoadReport,
    *,
    index_dir: Path,
    encoder: Encoder,
    tokenizer: ChineseTokenizer,
    key: IndexKey,
    chunking: dict[str, int],
    backend: PassageBackend,
    rebuild: bool = False,
    show_progress: bool = True,
) -> BuildReport:
    """Bring the index in ``index_dir`` up to date with ``corpus`` and publish it atomically.

    Only the passages of new and changed articles are embedded; ``backend`` gets them with the rows of
    the unchanged ones before the snapshot is published, and is told after."""
    started = time.perf_counter()
    report = BuildReport(skipped=list(corpus.skipped))
    with layout.build_lock(index_dir):
        layout.remove_stale(index_dir)
        previous, tokens_reusable = _previous(index_dir, key, rebuild, backend)
        articles: dict[str, Article] = {}
        hashes: dict[str, str] = {}
        chunks: list[Chunk] = []
        tokens: list[list[str]] = []
        reused: list[tuple[int, int]] = []  # (position in `chunks`, row of `previous`) carried over
        pending: list[tuple[str, list[int]]] = []  # new or changed articles: (hash, positions to embed)
        t0 = time.perf_counter()
        tokenize = chunk_time = 0.0
        for article in corpus.articles:
            digest = article_hash(article)
            articles[article.doc_id] = article
            hashes[article.doc_id] = digest
            old = previous.hashes.get(article.doc_id) if previous else None
            if previous is not None and old == digest:
                report.unchanged += 1
                for row in previous.rows_by_doc.get(article.doc_id, []):
                    chunk = previous.chunks[row]
                    reused.append((len(chunks), row))
                    chunks.append(chunk)
                    tokens.append(
                        previous.tokens[row]
                        if tokens_reusable
                        else tokenizer.tokens(passage_text(chunk, article.title))
                    )
                continue
            (report.updated if old else report.added).append(article.doc_id)
            positions = []
            t1 = time.perf_counter()
            new_chunks = chunk_article(article, **chunking)
            t2 = time.perf_counter()
            for chunk in new_chunks:
                positions.append(len(chunks))
                chunks.append(chunk)
                tokens.append(tokenizer.tokens(passage_text(chunk, article.title)))
            tokenize += time.perf_counter() - t2
            chunk_time += t2 - t1
            pending.append((digest, positions))
        if previous is not None:
            report.removed = sorted(set(previous.articles) - set(articles))
        report.timings["chunk"] = chunk_time
        report.timings["tokenize"] = tokenize
        report.timings["diff"] = time.perf_counter() - t0 - chunk_time - tokenize

        if previous is not None and not report.changed and tokens_reusable:
            report.articles, report.passages = len(articles), len(chunks)
            report.version = previous.version.name if previous.version else ""
            report.seconds = time.perf_counter() - started
            log.info("index is up to date (%d articles, %d passages)", len(articles), len(chunks))
            return report

        t0 = time.perf_counter()
        vectors = np.zeros((len(chunks), encoder.dim), dtype=np.float32)
        texts = {
            p: passage_text(chunks[p], articles[chunks[p].doc_id].title) for _, ps in pending for p in ps
        }
        # The same vectors whichever store keeps them: switching backends embeds nothing again.
        cache = EmbeddingCache(index_dir, key.dense.vectors_json(), encoder.dim)
        report.encoded = _embed_new(encoder, cache, pending, texts, vectors, show_progress)
        report.timings["encode"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        version = layout.new_version_dir(index_dir)
        was = previous.passages if previous is not None else None
        change = PassageWrite(SnapshotRows(chunks, hashes, tokens), articles, texts, vectors, reused)
        passages = backend.write(version, was, change)
        write_snapshot(version, SearchIndex(None, articles, hashes, chunks, tokens, passages))
        manifest = Manifest(
            key=key,
            built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            counts=Counts(len(articles), len(chunks)),
        )
        layout.seal_version(version, manifest.to_json())
        layout.publish(index_dir, version)
        backend.published(was, passages)
        cache.prune(set(hashes.values()))
        report.timings["write"] = time.perf_counter() - t0
    report.articles, report.passages = len(articles), len(chunks)
    report.version = version.name
    report.seconds = time.perf_counter() - started
    log.info(
        "index %s: %d articles, %d passages (%d added, %d updated, %d removed, %d passages embedded)",
        version.name,
        report.articles,
        report.passages,
        len(report.added),
        len(report.updated),
        len(report.removed),
        report.encoded,
    )
    return report
