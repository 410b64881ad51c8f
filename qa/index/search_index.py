"""The loaded index: articles, passages and their tokens (the snapshot's tables), and the passages' vectors
and lexical index (a ``PassageIndex`` of the configured backend), kept in one consistent snapshot.

The tables are stored per segment (``layout``, ``tables``) as memory-mapped arrays; a snapshot is the
live rows of its segments in turn, put together from per-segment arrays (its dead rows masked), and an
article, a passage or its tokens become Python objects only when a question asks for them. Segments are
immutable, so a snapshot read after a write shares the segments it has in common with the one before
and maps only the new one."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TypeVar, overload

import numpy as np
import numpy.typing as npt

from qa.errors import IndexCorruptError, IndexStoreError
from qa.index import layout
from qa.index.manifest import Counts, IndexKey, Manifest, SegmentRef
from qa.index.passages import PassageBackend, PassageIndex, SegmentRows, SnapshotRows
from qa.index.tables import NO_DATE, Tables, ranges
from qa.records import Article, Chunk, Section
from qa.text.terms import encode_term, term_hash

PASSAGE_CONTEXT = "title-or-heading-v1"
LOAD_ATTEMPTS = 5


def passage_text(chunk: Chunk, title: str) -> str:
    """What is embedded and BM25-indexed for a passage: its context line, then its text."""
    context = chunk.heading if chunk.section is Section.RELATED else title
    return f"{context}\n{chunk.text}" if context else chunk.text


@dataclass(frozen=True)
class SegmentTables:
    """One sealed (or being sealed) segment: its name, seal, folder and tables (every row it stores, live
    in a snapshot or not)."""

    name: str
    seal: str
    folder: Path
    tables: Tables

    @property
    def rows(self) -> int:
        return self.tables.rows

    def span(self, doc_id: str) -> tuple[int, int] | None:
        """The article's rows here (first, how many), None when the segment does not hold it."""
        i = self.tables.find(doc_id)
        return None if i is None else self.tables.span(i)

    def doc_ids(self) -> list[str]:
        return self.tables.doc_ids()


def read_segment_tables(index_dir: Path, ref: SegmentRef, *, verify: bool) -> SegmentTables:
    folder = layout.segment_dir(index_dir, ref.name)
    meta = layout.read_segment(folder, ref.seal, verify=verify)
    try:
        tables = Tables.load(folder)
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"segment {folder} cannot be read: {exc}; run `qa index --rebuild`") from exc
    if meta.get("rows") != tables.rows or meta.get("articles", tables.count) != tables.count:
        raise IndexCorruptError(f"segment {folder} is inconsistent; run `qa index --rebuild`")
    return SegmentTables(ref.name, ref.seal, folder, tables)


@dataclass(frozen=True)
class Presence:
    """Which words (columns, in the order asked) the sentences and the whole passages of some rows hold,
    and the titles of their articles: the sentences of ``row`` are rows ``sentence_bounds[at[row]]`` to
    ``sentence_bounds[at[row] + 1]`` of ``sentences``, its passage row ``passages[at[row]]``, its
    article's title row ``titles[at[row]]``."""

    at: dict[int, int]
    sentence_bounds: list[int]
    sentences: npt.NDArray[np.bool_]
    passages: npt.NDArray[np.bool_]
    titles: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class _Part:
    """One segment in one snapshot: its tables, its dead articles and where its live rows go."""

    tables: SegmentTables
    dead: frozenset[str]
    dead_at: npt.NDArray[np.int64]  # the positions of its dead articles (those it holds), ascending
    offset: int  # the snapshot row of its first live row
    local: npt.NDArray[np.int64] | None  # its live rows in order (None: every row is live)
    before: npt.NDArray[np.int64] | None  # live rows ahead of each of its rows (None: every row is live)
    live: npt.NDArray[np.bool_] | None

    @property
    def count(self) -> int:
        return self.tables.rows if self.local is None else int(self.local.size)

    def holds(self, doc_id: str) -> int | None:
        """The article's position in the segment when it is live here."""
        if doc_id in self.dead:
            return None
        return self.tables.tables.find(doc_id)

    def rows_of(self, i: int) -> range:
        first, count = self.tables.tables.span(i)
        start = self.offset + (first if self.before is None else int(self.before[first]))
        return range(start, start + count)


T = TypeVar("T")


class _RowView(Sequence[T]):
    """A snapshot's rows of one table (chunks, tokens, sentence token sets), each read when asked for."""

    def __init__(self, snapshot: Assembled, read: Callable[[Tables, int], T]) -> None:
        self._snapshot = snapshot
        self._read = read
        # A question reads its candidates' rows many times over (features, grounding, the answer).
        self._row = lru_cache(maxsize=16384)(self._read_row)

    def _read_row(self, row: int) -> T:
        part, local = self._snapshot.locate(row)
        return self._read(part.tables.tables, local)

    def __len__(self) -> int:
        return self._snapshot.size

    @overload
    def __getitem__(self, row: int) -> T: ...
    @overload
    def __getitem__(self, row: slice) -> list[T]: ...
    def __getitem__(self, row: int | slice) -> T | list[T]:
        if isinstance(row, slice):
            return [self[r] for r in range(*row.indices(len(self)))]
        if row < 0:
            row += self._snapshot.size
        return self._row(int(row))


class _Articles(Mapping[str, T]):
    """The live articles of a snapshot by doc_id (the records, their hashes or titles), each read when asked
    for."""

    def __init__(self, snapshot: Assembled, read: Callable[[Tables, int], T], *, cache: int = 0) -> None:
        self._snapshot = snapshot
        self._read = read
        # Small values asked for again and again (a question's candidates' titles): the last ``cache``
        # kept (an unknown doc_id raises, which is not kept).
        self._value = lru_cache(maxsize=cache)(self._find) if cache else self._find

    def __getitem__(self, doc_id: str) -> T:
        if isinstance(doc_id, str):
            return self._value(doc_id)
        raise KeyError(doc_id)

    def _find(self, doc_id: str) -> T:
        part, i = self._snapshot.holder(doc_id)
        return self._read(part.tables.tables, i)

    def __iter__(self) -> Iterator[str]:
        for part in self._snapshot.parts:
            for doc_id in part.tables.doc_ids():
                if doc_id not in part.dead:
                    yield doc_id

    def __len__(self) -> int:
        return self._snapshot.article_count


class _RowsByDoc(Mapping[str, Sequence[int]]):
    """Each live article's rows in the snapshot, in order (they are consecutive)."""

    def __init__(self, snapshot: Assembled) -> None:
        self._snapshot = snapshot
        # a question's candidates' articles, asked by the reranker and grounding: the last 8192 kept
        self._rows = lru_cache(maxsize=8192)(self._find)

    def __getitem__(self, doc_id: str) -> Sequence[int]:
        if isinstance(doc_id, str):
            return self._rows(doc_id)
        raise KeyError(doc_id)

    def _find(self, doc_id: str) -> range:
        part, i = self._snapshot.holder(doc_id)
        rows = part.rows_of(i)
        if not rows:
            raise KeyError(doc_id)
        return rows

    def __iter__(self) -> Iterator[str]:
        return (d for d in self._snapshot.articles if d in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Assembled:
    """A snapshot's rows put together from its segments' tables: the live rows of each in turn. Built
    from per-segment arrays only; an article or a row becomes a Python object when it is asked for."""

    def __init__(self, parts: Sequence[tuple[SegmentTables, frozenset[str]]]) -> None:
        self.parts: list[_Part] = []
        self.segments: list[SegmentRows] = []
        offset = articles = 0
        live_ids = []
        for tables, dead in parts:
            t = tables.tables
            dead_at = sorted(i for i in (t.find(d) for d in dead) if i is not None)
            local = before = live = None
            if dead_at:
                live = np.ones(t.rows, dtype=bool)
                for i in dead_at:
                    first, count = t.span(i)
                    live[first : first + count] = False
                local = np.flatnonzero(live).astype(np.int64)
                before = np.cumsum(live) - live  # live rows ahead of each row
            at = np.array(dead_at, dtype=np.int64)
            part = _Part(tables, frozenset(dead), at, offset, local, before, live)
            self.parts.append(part)
            self.segments.append(SegmentRows(tables.name, tables.folder, t.rows, live))
            ids = t.doc_ids_array()
            live_ids.append(np.delete(ids, dead_at) if dead_at else ids)
            offset += part.count
            articles += t.count - len(dead_at)
        self.size = offset
        self.article_count = articles
        self._offsets = [p.offset for p in self.parts]
        if len(live_ids) > 1:
            # An article is live in one segment at most; a vectorised check of the doc_ids, nothing built.
            width = max(ids.dtype.itemsize for ids in live_ids)
            everything = np.concatenate([ids.astype(f"S{width}") for ids in live_ids])
            unique, counts = np.unique(everything, return_counts=True)
            if np.any(counts > 1):
                twice = bytes(unique[np.argmax(counts > 1)]).decode("utf-8")
                raise IndexCorruptError(
                    f"article {twice!r} is live in two segments; run `qa index --rebuild`"
                )
        self._views()

    def _views(self) -> None:
        self.articles: Mapping[str, Article] = _Articles(self, lambda t, i: t.article(i)[0])
        self.hashes: Mapping[str, str] = _Articles(self, Tables.hash)
        self.titles: Mapping[str, str] = _Articles(self, Tables.title, cache=8192)
        self.title_tokens: Mapping[str, Sequence[str]] = _Articles(self, Tables.title_tokens)
        self.chunks: Sequence[Chunk] = _RowView(self, lambda t, r: t.chunk(r))
        self.tokens: Sequence[Sequence[str]] = _RowView(self, Tables.tokens)
        self.sections: Sequence[Section] = _RowView(self, Tables.section)
        self.sentences: Sequence[tuple[frozenset[str], ...]] = _RowView(self, Tables.sentences)
        self.names: Sequence[tuple[frozenset[str], frozenset[str]]] = _RowView(self, Tables.names)
        self.rows_by_doc: Mapping[str, Sequence[int]] = _RowsByDoc(self)

    def with_segment(self, position: int, tables: SegmentTables) -> Assembled:
        """This snapshot with segment ``position``'s tables replaced by ``tables``, which hold the same
        rows (the segment as sealed and read back after a write made it): nothing is computed again."""
        part = self.parts[position]
        old = part.tables.tables
        if tables.name != part.tables.name or (tables.rows, tables.tables.count) != (old.rows, old.count):
            raise ValueError(f"segment {tables.name} does not hold the rows of segment {part.tables.name}")
        other = object.__new__(Assembled)
        other.parts = [*self.parts[:position], replace(part, tables=tables), *self.parts[position + 1 :]]
        other.segments = list(self.segments)
        other.size, other.article_count, other._offsets = self.size, self.article_count, self._offsets
        other._views()
        return other

    def stored(self) -> list[tuple[str, str]]:
        """Every live article's doc_id and hash, in snapshot order (read in bulk, no article is read)."""
        out = []
        for part in self.parts:
            t = part.tables.tables
            for doc_id, digest in zip(t.doc_ids(), t.hashes(), strict=True):
                if doc_id not in part.dead:
                    out.append((doc_id, digest))
        return out

    def live_hashes(self) -> set[str]:
        """Every live article's hash, read in bulk from each segment's array (no article is read)."""
        out: set[str] = set()
        for part in self.parts:
            hashes = part.tables.tables.hashes_array()
            if part.dead_at.size:
                hashes = np.delete(hashes, part.dead_at)
            out.update(bytes(v).decode("ascii") for v in hashes.tolist())
        return out

    def holding(self, digests: Iterable[str]) -> set[str]:
        """Those of ``digests`` that some live article has: a vectorised scan of each segment's hashes
        per digest (a write asks about the few it replaced or removed), no article is read."""
        found: set[str] = set()
        for digest in set(digests):
            key = digest.encode("ascii")
            for part in self.parts:
                hashes = part.tables.tables.hashes_array()
                if len(key) > hashes.dtype.itemsize:
                    continue
                at = np.flatnonzero(hashes == key)
                if at.size and not np.all(np.isin(at, part.dead_at)):
                    found.add(digest)
                    break
        return found

    def holder(self, doc_id: str) -> tuple[_Part, int]:
        """The part where the article ``doc_id`` is live and its position there; KeyError if none."""
        for part in self.parts:
            i = part.holds(doc_id)
            if i is not None:
                return part, i
        raise KeyError(doc_id)

    def locate(self, row: int) -> tuple[_Part, int]:
        """The part holding snapshot row ``row`` and the row's number there."""
        if not 0 <= row < self.size:
            raise IndexError(f"row {row} of a snapshot of {self.size}")
        part = self.parts[bisect.bisect_right(self._offsets, row) - 1]
        local = row - part.offset
        return part, local if part.local is None else int(part.local[local])

    def rows(self) -> SnapshotRows:
        return SnapshotRows(self.chunks, self.hashes, self.tokens, self.segments)

    def presence(self, rows: Sequence[int], words: Sequence[str]) -> Presence:
        """Which of ``words`` (distinct) each sentence and each passage of ``rows`` (distinct) and the title
        of each one's article holds, by the tokens the build stored, segment by segment: each word is
        looked up once per segment, nothing is decoded."""
        encoded = [encode_term(w) for w in words]
        hashes = np.fromiter(map(term_hash, encoded), dtype=np.uint64, count=len(encoded))
        by_part: dict[int, list[tuple[int, int]]] = {}
        for i, row in enumerate(rows):
            part, local = self.locate(row)
            by_part.setdefault(id(part), []).append((i, local))
        parts = {id(p): p for p in self.parts}
        counts = np.zeros(len(rows), dtype=np.int64)
        pieces: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]] = []
        passages = np.zeros((len(rows), len(words)), dtype=np.bool_)
        titles = np.zeros((len(rows), len(words)), dtype=np.bool_)
        for key, members in by_part.items():
            tables = parts[key].tables.tables
            at = np.array([i for i, _ in members], dtype=np.int64)
            stored = np.array([r for _, r in members], dtype=np.int64)
            held, in_sentence, in_passage, in_title = tables.presence(
                stored, tables.word_ids(encoded, hashes)
            )
            passages[at] = in_passage
            titles[at] = in_title
            counts[at] = held
            pieces.append((at, held, in_sentence))
        # The sentences in the order of ``rows``: each part's block of rows moved to where they go.
        bounds = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(counts, out=bounds[1:])
        sentences = np.zeros((int(bounds[-1]), len(words)), dtype=np.bool_)
        for at, held, in_sentence in pieces:
            sentences[ranges(bounds[at], bounds[at] + held)] = in_sentence
        return Presence({row: i for i, row in enumerate(rows)}, bounds.tolist(), sentences, passages, titles)

    def mask(
        self, doc_ids: Iterable[str] | None, date_from: str | None, date_to: str | None
    ) -> npt.NDArray[np.bool_]:
        """Which rows belong to the articles ``doc_ids`` (every article when None) dated in the range."""
        allowed = np.zeros(self.size, dtype=bool)
        wanted = set(doc_ids) if doc_ids is not None else None
        low = date_from.encode() if date_from else None
        high = date_to.encode() if date_to else None
        for part in self.parts:
            t = part.tables.tables
            keep = np.ones(t.count, dtype=bool)
            if wanted is not None:
                keep[:] = False
                for doc_id in wanted:
                    i = part.holds(doc_id)
                    if i is not None:
                        keep[i] = True
            for doc_id in part.dead:
                i = t.find(doc_id)
                if i is not None:
                    keep[i] = False
            if low is not None or high is not None:
                dates = t.dates()
                keep &= dates != NO_DATE
                if low is not None:
                    keep &= (dates == b"") | (dates >= low)
                if high is not None:
                    keep &= (dates == b"") | (dates <= high)
            rows = keep[t.row_articles()]  # every stored row of the segment
            if part.live is not None:
                rows = rows[part.live]
            allowed[part.offset : part.offset + part.count] = rows
        return allowed


def assemble(parts: Sequence[tuple[SegmentTables, frozenset[str]]]) -> Assembled:
    """The snapshot made of ``parts`` (each segment's tables and its dead articles), in order.
    IndexCorruptError when an article is live in two segments."""
    return Assembled(parts)


@dataclass
class SearchIndex:
    manifest: Manifest | None  # None while a build assembles it
    snapshot: Assembled
    passages: PassageIndex
    version: Path | None = None

    @property
    def articles(self) -> Mapping[str, Article]:
        return self.snapshot.articles

    @property
    def hashes(self) -> Mapping[str, str]:
        return self.snapshot.hashes

    @property
    def titles(self) -> Mapping[str, str]:
        """An article's title, read without its record."""
        return self.snapshot.titles

    @property
    def title_tokens(self) -> Mapping[str, Sequence[str]]:
        """The BM25 tokens of an article's title, as the build's tokenizer made them."""
        return self.snapshot.title_tokens

    @property
    def sections(self) -> Sequence[Section]:
        """Each row's section, read without its chunk."""
        return self.snapshot.sections

    @property
    def chunks(self) -> Sequence[Chunk]:
        return self.snapshot.chunks

    @property
    def tokens(self) -> Sequence[Sequence[str]]:
        return self.snapshot.tokens

    @property
    def sentences(self) -> Sequence[tuple[frozenset[str], ...]]:
        """The token set of each sentence of each passage, as the build's tokenizer made them."""
        return self.snapshot.sentences

    @property
    def names(self) -> Sequence[tuple[frozenset[str], frozenset[str]]]:
        """The people and the places named in each passage, as the build's tokenizer tagged them."""
        return self.snapshot.names

    @property
    def rows_by_doc(self) -> Mapping[str, Sequence[int]]:
        """An article's rows, in order."""
        return self.snapshot.rows_by_doc

    def presence(self, rows: Sequence[int], words: Sequence[str]) -> Presence:
        """Which of ``words`` each sentence and each whole passage of ``rows`` holds (see ``Presence``)."""
        return self.snapshot.presence(rows, words)

    @property
    def segments(self) -> tuple[SegmentTables, ...]:
        """The tables of the segments the snapshot is made of."""
        return tuple(p.tables for p in self.snapshot.parts)

    def __len__(self) -> int:
        return self.snapshot.size

    def stored(self) -> list[tuple[str, str]]:
        """Every live article's doc_id and hash, in snapshot order."""
        return self.snapshot.stored()

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
        return self.snapshot.mask(doc_ids, date_from, date_to)


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
    return SearchIndex(manifest, snapshot, passages, version)


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
