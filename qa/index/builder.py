"""Build or update the index from the corpus folder: only new or changed articles are embedded."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from embeddings.encoder import Encoder, Vectors
from embeddings.vector_store import FaissFlatStore
from qa.errors import CorpusError, IndexStoreError
from qa.index import layout
from qa.index.search_index import SearchIndex, passage_text, read_snapshot, write_snapshot
from qa.ingest.chunker import chunk_article
from qa.ingest.loader import LoadReport
from qa.records import Article, Chunk
from qa.retrieval.lexical import LexicalIndex
from qa.retrieval.tokenize import ChineseTokenizer

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


def _encode(encoder: Encoder, texts: list[str], show_progress: bool) -> Vectors:
    parts = []
    with tqdm(total=len(texts), desc="embedding passages", unit="passage", disable=not show_progress) as bar:
        for i in range(0, len(texts), ENCODE_BATCH):
            batch = texts[i : i + ENCODE_BATCH]
            parts.append(encoder.encode_passages(batch))
            bar.update(len(batch))
    return np.concatenate(parts) if parts else np.zeros((0, encoder.dim), dtype=np.float32)


def _previous(
    index_dir: Path, dense_key: dict[str, Any], lexical_key: dict[str, Any], rebuild: bool
) -> tuple[SearchIndex | None, bool]:
    """The live index to reuse vectors from (None if unusable), and whether its BM25 tokens are reusable."""
    if rebuild:
        return None, False
    try:
        version = layout.current_version(index_dir)
        if version is None:
            return None, False
        manifest = layout.read_manifest(version, verify=True)
        if manifest.get("dense") != dense_key:
            log.info("model or chunking changed since the last build: every passage is embedded again")
            return None, False
        return read_snapshot(version, manifest), manifest.get("lexical") == lexical_key
    except IndexStoreError as exc:
        log.warning("not reusing the existing index: %s", exc)
        return None, False


def build_index(
    corpus: LoadReport,
    *,
    index_dir: Path,
    encoder: Encoder,
    tokenizer: ChineseTokenizer,
    dense_key: dict[str, Any],
    lexical_key: dict[str, Any],
    chunking: dict[str, int],
    rebuild: bool = False,
    show_progress: bool = True,
) -> BuildReport:
    """Bring the index in ``index_dir`` up to date with ``corpus`` and publish it atomically."""
    started = time.perf_counter()
    report = BuildReport(skipped=list(corpus.skipped))
    with layout.build_lock(index_dir):
        layout.remove_stale(index_dir)
        previous, tokens_reusable = _previous(index_dir, dense_key, lexical_key, rebuild)
        articles: dict[str, Article] = {}
        hashes: dict[str, str] = {}
        chunks: list[Chunk] = []
        tokens: list[list[str]] = []
        reused_rows: list[int] = []  # rows of `previous` whose vectors carry over
        new_positions: list[int] = []  # positions in `chunks` that need embedding
        t0 = time.perf_counter()
        for article in corpus.articles:
            digest = article_hash(article)
            articles[article.doc_id] = article
            hashes[article.doc_id] = digest
            old = previous.hashes.get(article.doc_id) if previous else None
            if previous is not None and old == digest:
                report.unchanged += 1
                for row in previous.rows_by_doc.get(article.doc_id, []):
                    chunk = previous.chunks[row]
                    chunks.append(chunk)
                    tokens.append(
                        previous.tokens[row]
                        if tokens_reusable
                        else tokenizer.tokens(passage_text(chunk, article.title))
                    )
                    reused_rows.append(row)
                continue
            (report.updated if old else report.added).append(article.doc_id)
            for chunk in chunk_article(article, **chunking):
                new_positions.append(len(chunks))
                chunks.append(chunk)
                tokens.append(tokenizer.tokens(passage_text(chunk, article.title)))
        if previous is not None:
            report.removed = sorted(set(previous.articles) - set(articles))
        report.timings["parse_tokenize"] = time.perf_counter() - t0

        if previous is not None and not report.changed and tokens_reusable:
            report.articles, report.passages = len(articles), len(chunks)
            report.version = previous.version.name if previous.version else ""
            report.seconds = time.perf_counter() - started
            log.info("index is up to date (%d articles, %d passages)", len(articles), len(chunks))
            return report

        t0 = time.perf_counter()
        texts = [passage_text(chunks[i], articles[chunks[i].doc_id].title) for i in new_positions]
        fresh = _encode(encoder, texts, show_progress)
        report.encoded = len(texts)
        report.timings["encode"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        vectors = np.zeros((len(chunks), encoder.dim), dtype=np.float32)
        if new_positions:
            vectors[new_positions] = fresh
        if previous is not None and reused_rows:
            fresh_set = set(new_positions)
            reused_positions = [i for i in range(len(chunks)) if i not in fresh_set]
            vectors[reused_positions] = previous.store.vectors(reused_rows)
        store = FaissFlatStore(encoder.dim)
        store.add(vectors)
        lexical = LexicalIndex.build(tokens)
        snapshot = SearchIndex({}, articles, hashes, chunks, tokens, store, lexical)
        version = layout.new_version_dir(index_dir)
        write_snapshot(version, snapshot)
        manifest = {
            "dense": dense_key,
            "lexical": lexical_key,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "counts": {"articles": len(articles), "passages": len(chunks)},
        }
        layout.seal_version(version, manifest)
        layout.publish(index_dir, version)
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
