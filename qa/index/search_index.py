"""The loaded index: articles, passages and their tokens (the snapshot's tables), and the passages' vectors
and lexical index (a ``PassageIndex`` of the configured backend), kept in one consistent snapshot.

The tables are stored per segment (``layout``); a snapshot is the live rows of its segments in turn.
Segments are immutable, so a snapshot read after a write takes the segments it shares with the one
before from memory and reads only the new one."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qa.errors import IndexCorruptError, IndexStoreError
from qa.index import layout
from qa.index.manifest import Counts, IndexKey, Manifest, SegmentRef
from qa.index.passages import PassageBackend, PassageIndex, SegmentRows, SnapshotRows
from qa.records import Article, Chunk, Section, Segment

ARTICLES = "articles.jsonl"
CHUNKS = "chunks.jsonl"
TOKENS = "tokens.jsonl"
PASSAGE_CONTEXT = "title-or-heading-v1"
LOAD_ATTEMPTS = 5


def passage_text(chunk: Chunk, title: str) -> str:
    """What is embedded and BM25-indexed for a passage: its context line, then its text."""
    context = chunk.heading if chunk.section is Section.RELATED else title
    return f"{context}\n{chunk.text}" if context else chunk.text


@dataclass
class SearchIndex:
    manifest: Manifest | None  # None while a build assembles it
    articles: dict[str, Article]
    hashes: dict[str, str]
    chunks: list[Chunk]
    tokens: list[list[str]]
    passages: PassageIndex
    version: Path | None = None
    segments: tuple[SegmentTables, ...] = ()  # the tables of the segments the snapshot is made of
    rows_by_doc: dict[str, Sequence[int]] = field(default_factory=dict)  # an article's rows, in order

    def __post_init__(self) -> None:
        if self.rows_by_doc or not self.chunks:
            return
        rows: dict[str, list[int]] = {}
        for row, chunk in enumerate(self.chunks):
            rows.setdefault(chunk.doc_id, []).append(row)
        self.rows_by_doc = dict(rows)

    def __len__(self) -> int:
        return len(self.chunks)

    def sections_of(self, doc_id: str) -> dict[str, int]:
        """How many of the article's passages are body text and how many related-news teasers."""
        counts: dict[str, int] = {}
        for row in self.rows_by_doc.get(doc_id, []):
            section = self.chunks[row].section.value
            counts[section] = counts.get(section, 0) + 1
        return dict(sorted(counts.items()))

    def mask(
        self,
        *,
        doc_ids: Iterable[str] | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
    ) -> npt.NDArray[np.bool_] | None:
        """Which passages a filter allows; None when there is no filter."""
        if doc_ids is None and date_from is None and date_to is None:
            return None
        allowed = np.zeros(len(self.chunks), dtype=bool)
        wanted = set(doc_ids) if doc_ids is not None else set(self.rows_by_doc)
        for doc_id in wanted:
            article = self.articles.get(doc_id)
            if article is None:
                continue
            if (date_from or date_to) and article.date is None:
                continue
            if date_from and article.date and article.date < date_from:
                continue
            if date_to and article.date and article.date > date_to:
                continue
            allowed[self.rows_by_doc.get(doc_id, [])] = True
        return allowed


def article_to_json(article: Article, digest: str) -> dict[str, Any]:
    return {
        "doc_id": article.doc_id,
        "title": article.title,
        "date": article.date,
        "source": article.source,
        "url": article.url,
        "hash": digest,
        "dropped": article.dropped,
        "fetched_at": article.fetched_at,
        "other_urls": list(article.other_urls),
        "segments": [[s.section.value, s.start, s.end, s.heading] for s in article.segments],
        "text": article.text,
    }


def article_from_json(record: dict[str, Any]) -> tuple[Article, str]:
    segments = tuple(
        Segment(Section(sec), start, end, heading) for sec, start, end, heading in record["segments"]
    )
    article = Article(
        doc_id=record["doc_id"],
        title=record["title"],
        date=record["date"],
        source=record["source"],
        text=record["text"],
        segments=segments,
        url=record.get("url"),
        dropped=record.get("dropped", 0),
        fetched_at=record.get("fetched_at"),
        other_urls=tuple(record.get("other_urls", ())),
    )
    return article, record["hash"]


@dataclass(frozen=True)
class SegmentTables:
    """The tables of one sealed segment as read: every row it stores, live in a snapshot or not."""

    name: str
    seal: str
    folder: Path
    articles: dict[str, Article]
    hashes: dict[str, str]
    chunks: list[Chunk]
    tokens: list[list[str]]
    spans: dict[str, tuple[int, int]]  # doc_id → (first row, rows): an article's rows are consecutive


def spans_of(chunks: Sequence[Chunk]) -> dict[str, tuple[int, int]]:
    """Each article's rows in a segment, which are consecutive: (first row, how many)."""
    spans: dict[str, tuple[int, int]] = {}
    for row, chunk in enumerate(chunks):
        first, count = spans.get(chunk.doc_id, (row, 0))
        if first + count != row:
            raise IndexCorruptError(f"the passages of {chunk.doc_id!r} are not consecutive in a segment")
        spans[chunk.doc_id] = (first, count + 1)
    return spans


def write_segment_tables(
    folder: Path,
    articles: Sequence[tuple[Article, str]],
    chunks: Sequence[Chunk],
    tokens: Sequence[Sequence[str]],
) -> None:
    """Write a new segment's tables into its folder (not yet sealed): its articles with their hashes,
    and its passages with their BM25 tokens, in row order."""
    with open(folder / ARTICLES, "w", encoding="utf-8") as out:
        for article, digest in articles:
            out.write(json.dumps(article_to_json(article, digest), ensure_ascii=False))
            out.write("\n")
    with open(folder / CHUNKS, "w", encoding="utf-8") as out:
        for c in chunks:
            out.write(json.dumps([c.doc_id, c.section.value, c.start, c.end, c.heading], ensure_ascii=False))
            out.write("\n")
    with open(folder / TOKENS, "w", encoding="utf-8") as out:
        for row in tokens:
            out.write(json.dumps(list(row), ensure_ascii=False))
            out.write("\n")


def _read_jsonl(path: Path) -> list[Any]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_segment_tables(index_dir: Path, ref: SegmentRef, *, verify: bool) -> SegmentTables:
    folder = layout.segment_dir(index_dir, ref.name)
    meta = layout.read_segment(folder, ref.seal, verify=verify)
    try:
        articles: dict[str, Article] = {}
        hashes: dict[str, str] = {}
        for record in _read_jsonl(folder / ARTICLES):
            article, digest = article_from_json(record)
            articles[article.doc_id] = article
            hashes[article.doc_id] = digest
        chunks = []
        for doc_id, section, start, end, heading in _read_jsonl(folder / CHUNKS):
            text = articles[doc_id].text[start:end]
            chunks.append(Chunk(doc_id, Section(section), start, end, text, heading))
        tokens = _read_jsonl(folder / TOKENS)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexCorruptError(f"segment {folder} cannot be read: {exc}; run `qa index --rebuild`") from exc
    if (
        len(chunks) != len(tokens)
        or meta.get("rows") != len(chunks)
        or not all(0 <= c.start < c.end <= len(articles[c.doc_id].text) for c in chunks)
        or not all(isinstance(t, list) for t in tokens)
    ):
        raise IndexCorruptError(f"segment {folder} is inconsistent; run `qa index --rebuild`")
    return SegmentTables(ref.name, ref.seal, folder, articles, hashes, chunks, tokens, spans_of(chunks))


@dataclass
class Assembled:
    """A snapshot's rows put together from its segments' tables: the live rows of each in turn."""

    articles: dict[str, Article]
    hashes: dict[str, str]
    chunks: list[Chunk]
    tokens: list[list[str]]
    segments: list[SegmentRows]
    rows_by_doc: dict[str, Sequence[int]]

    def rows(self) -> SnapshotRows:
        return SnapshotRows(self.chunks, self.hashes, self.tokens, self.segments)


def assemble(parts: Sequence[tuple[SegmentTables, frozenset[str]]]) -> Assembled:
    """The snapshot made of ``parts`` (each segment's tables and its dead articles), in order.
    IndexCorruptError when an article is live in two segments."""
    out = Assembled({}, {}, [], [], [], {})
    for tables, dead in parts:
        offset = len(out.chunks)
        for doc_id, article in tables.articles.items():
            if doc_id in dead:
                continue
            if doc_id in out.articles:
                raise IndexCorruptError(
                    f"article {doc_id!r} is live in two segments; run `qa index --rebuild`"
                )
            out.articles[doc_id] = article
            out.hashes[doc_id] = tables.hashes[doc_id]
        spans = tables.spans
        if dead:
            live = np.ones(len(tables.chunks), dtype=bool)
            for doc_id in dead & spans.keys():
                first, count = spans[doc_id]
                live[first : first + count] = False
            keep = live.tolist()
            out.chunks.extend(itertools.compress(tables.chunks, keep))
            out.tokens.extend(itertools.compress(tables.tokens, keep))
            before = np.cumsum(live) - live  # live rows ahead of each row
            for doc_id, (first, count) in spans.items():
                if doc_id not in dead:
                    start = offset + int(before[first])
                    out.rows_by_doc[doc_id] = range(start, start + count)
            mask: npt.NDArray[np.bool_] | None = live
        else:
            out.chunks.extend(tables.chunks)
            out.tokens.extend(tables.tokens)
            for doc_id, (first, count) in spans.items():
                out.rows_by_doc[doc_id] = range(offset + first, offset + first + count)
            mask = None
        out.segments.append(SegmentRows(tables.name, tables.folder, len(tables.chunks), mask))
    return out


def read_snapshot(
    version: Path,
    manifest: Manifest,
    backend: PassageBackend,
    previous: SearchIndex | None = None,
    *,
    verify: bool = True,
) -> SearchIndex:
    """The snapshot in ``version``, its passages opened by ``backend``. The segments it shares with
    ``previous`` (a snapshot read before) are taken from there, not read again."""
    index_dir = version.parent
    known = {t.name: t for t in previous.segments} if previous is not None else {}
    parts = []
    for ref in manifest.segments:
        tables = known.get(ref.name)
        if tables is None or tables.seal != ref.seal:
            tables = read_segment_tables(index_dir, ref, verify=verify)
        parts.append((tables, ref.dead))
    snapshot = assemble(parts)
    try:
        passages = backend.open(
            version, manifest, snapshot.rows(), previous.passages if previous is not None else None
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexCorruptError(
            f"index at {version} cannot be read: {exc}; run `qa index --rebuild`"
        ) from exc
    counts = manifest.counts or Counts(len(snapshot.articles), len(snapshot.chunks))
    if len(snapshot.chunks) != len(passages) or counts != Counts(
        len(snapshot.articles), len(snapshot.chunks)
    ):
        raise IndexCorruptError(f"index at {version} is inconsistent; run `qa index --rebuild`")
    return SearchIndex(
        manifest,
        snapshot.articles,
        snapshot.hashes,
        snapshot.chunks,
        snapshot.tokens,
        passages,
        version,
        tuple(t for t, _ in parts),
        snapshot.rows_by_doc,
    )


def load_index(
    index_dir: Path,
    key: IndexKey,
    backend: PassageBackend,
    *,
    verify: bool = True,
    previous: SearchIndex | None = None,
) -> SearchIndex:
    """The live version of the index; IndexStoreError when there is none or it does not fit the config.
    Segments it shares with ``previous`` are not read (nor checked) again: they are immutable.

    Takes no lock: if a writer publishes a new version and removes this one while it is being read, the
    read fails and is retried on the version ``CURRENT`` names now. Damage is reported, never retried away.
    """
    for attempt in range(LOAD_ATTEMPTS):
        pointer = layout.read_pointer(index_dir)
        if pointer is None:
            raise IndexStoreError(f"no index in {index_dir}; run `qa index`")
        try:
            version = layout.pointed_version(index_dir, pointer)
            manifest = Manifest.from_json(layout.read_manifest(version, verify=verify))
            key.check(manifest)
            return read_snapshot(version, manifest, backend, previous, verify=verify)
        except IndexCorruptError:
            if attempt + 1 == LOAD_ATTEMPTS or layout.read_pointer(index_dir) == pointer:
                raise
    raise AssertionError("unreachable")
