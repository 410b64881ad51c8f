"""One segment's tables as plain numpy arrays, memory-mapped on load: nothing per row or per article is
built as a Python object until a question needs that row.

A segment stores, in one file ``table.bin`` (one-dimensional arrays, then a small JSON footer naming
them; listed and checksummed by the segment's seal like its other files, and one file, so that a write
fsyncs it once):

- its articles: each one's JSON record (``article_json`` and ``article_offsets``), its ``doc_id`` (a
  sorted copy with the order for a binary search), its hash and the length of its text;
- its rows (passages): the article each belongs to, its section, its span of the article's text and its
  heading (a string table); an article's rows are consecutive (``article_rows``);
- the BM25 tokens of each row and the token set of each sentence of each row (what the reranker reads),
  as ids into one vocabulary (a UTF-8 string table) ordered by each word's stable 64-bit hash
  (``vocab_hashes``), so that a question's words are found by a binary search and the reranker matches
  them against the ids, decoding nothing;
- each article's title (a string table) and its BM25 tokens (ids into the same vocabulary), what the
  reranker compares a question with, so that no question reads an article's record or runs jieba for it;
- the people and the places jieba's tagger finds in each row (ids into the same vocabulary), what the
  reranker reads for "who" and "where" questions, so that no question runs the tagger;
- how many rows hold each character pair (the ``#XY`` tokens), for the name variants.

``encode`` turns a write's lists into these arrays (a segment being built is the same object, over
arrays in memory); ``save`` writes them; ``load`` maps them. A row is materialised (``chunk``,
``tokens``) when it is asked for, and recently asked rows and articles are cached.
"""

from __future__ import annotations

import json
import mmap
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qa.records import Article, Chunk, Section, Segment
from qa.text.terms import confirm, encode_term, term_hash

TABLE_FILE = "table.bin"
_MAGIC = b"QATABLE1"
_ALIGN = 64
_MAP_AT = 1 << 20  # smaller table files are read whole, larger ones mapped
WORD_CACHE = 1 << 18  # decoded words a segment keeps (a few tens of MB at most)
SECTIONS = tuple(Section)
NO_DATE = b"~"  # an article's date when it states none (never a date: they are ISO digits)  # a row's section is its position here

Array = npt.NDArray[Any]

# Every file of a table and its dtype kind ("S": fixed-width bytes, "U": fixed-width text).
_FILES: dict[str, str] = {
    "article_json": "u1",
    "article_offsets": "i8",
    "doc_ids": "S",
    "doc_order": "i8",
    "hashes": "S",
    "dates": "S",  # ISO yyyy-mm-dd, NO_DATE when the article states none
    "text_lengths": "i8",
    "article_rows": "i8",
    "row_article": "i4",
    "row_section": "u1",
    "row_start": "i8",
    "row_end": "i8",
    "headings": "u1",
    "heading_offsets": "i8",
    "vocab": "u1",
    "vocab_offsets": "i8",
    "vocab_hashes": "u8",  # ascending: a word's id is its place in hash order
    "token_ids": "i4",
    "token_rows": "i8",
    "sentence_rows": "i8",
    "sentence_ids": "i4",
    "sentence_tokens": "i8",
    "titles": "u1",
    "title_offsets": "i8",
    "title_ids": "i4",
    "title_tokens": "i8",
    "people_ids": "i4",
    "people_rows": "i8",
    "place_ids": "i4",
    "place_rows": "i8",
    "pairs": "U",
    "pair_rows": "i8",
}


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


def _strings(values: Sequence[bytes]) -> tuple[Array, Array]:
    """A string table: the bytes of every value in turn, and where each starts (one more offset at the end)."""
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, values), dtype=np.int64, count=len(values)), out=offsets[1:])
    return np.frombuffer(b"".join(values), dtype=np.uint8).copy(), offsets


def _ragged(lists: Sequence[Sequence[int]]) -> tuple[Array, Array]:
    """Lists of ints as one flat array and the offsets of each list."""
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, lists), dtype=np.int64, count=len(lists)), out=offsets[1:])
    flat = np.fromiter((i for ids in lists for i in ids), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


def _pair_counts(token_lists: Sequence[Sequence[str]]) -> Counter[str]:
    """In how many rows each character pair (the BM25 tokens written ``#XY``) occurs."""
    counts: Counter[str] = Counter()
    for tokens in token_lists:
        counts.update({t[1:] for t in tokens if len(t) == 3 and t.startswith("#")})
    return counts


def _bytes_array(values: Sequence[bytes]) -> Array:
    width = max((len(v) for v in values), default=1) or 1
    return np.array(values, dtype=f"S{width}")


def ranges(starts: Array, ends: Array) -> Array:
    """Every position of the ranges ``starts[i]:ends[i]``, one after another."""
    lengths = ends - starts
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    firsts = np.cumsum(lengths) - lengths
    return np.repeat(starts - firsts, lengths) + np.arange(total, dtype=np.int64)


def _mark(out: Array, ids: Array, starts: Array, ends: Array, wanted: Array, columns: Array) -> None:
    """``out[g, columns[k]]`` = True where the range ``starts[g]:ends[g]`` of ``ids`` holds ``wanted[k]``
    (``wanted`` ascending)."""
    held = ids[ranges(starts, ends)]
    owner = np.repeat(np.arange(starts.size), ends - starts)
    at = np.minimum(np.searchsorted(wanted, held), wanted.size - 1)
    hit = wanted[at] == held
    out[owner[hit], columns[at[hit]]] = True


class Tables:
    """One segment's tables: arrays in memory (a segment being written) or mapped from its folder."""

    def __init__(self, arrays: dict[str, Array]) -> None:
        self._a = arrays
        self.rows = int(arrays["row_article"].size)
        self.count = int(arrays["doc_ids"].size)  # articles
        self.article = lru_cache(maxsize=1024)(self._article)
        self.chunk = lru_cache(maxsize=8192)(self._chunk)
        self._article_text = lru_cache(maxsize=1024)(self._text)
        self.find = lru_cache(maxsize=65536)(self._find)
        # Words recur across candidate passages: each is decoded from the blob once, then looked up (a
        # plain dict, emptied when it reaches WORD_CACHE words: an lru_cache costs what decoding does).
        self._word_cache: dict[int, str] = {}

    # -- writing -------------------------------------------------------------------------------------
    @classmethod
    def encode(
        cls,
        articles: Sequence[tuple[Article, str]],
        chunks: Sequence[Chunk],
        tokens: Sequence[Sequence[str]],
        sentences: Sequence[Sequence[Iterable[str]]],
        titles: Sequence[Sequence[str]],
        names: Sequence[tuple[Sequence[str], Sequence[str]]],
    ) -> Tables:
        """The tables of a new segment: ``articles`` with their hashes, in row order, and the BM25 tokens
        of each one's title (``titles``); ``chunks``, their BM25 ``tokens``, the tokens of each of
        their sentences and the people and places named in them (``names``), row by row."""
        if not len(chunks) == len(tokens) == len(sentences) == len(names):
            raise ValueError("every row needs its chunk, its tokens, its sentences' tokens and its names")
        if len(titles) != len(articles):
            raise ValueError("every article needs its title's tokens")
        position = {article.doc_id: i for i, (article, _) in enumerate(articles)}
        row_article = np.fromiter((position[c.doc_id] for c in chunks), dtype=np.int32, count=len(chunks))
        if row_article.size and np.any(np.diff(row_article) < 0):
            raise ValueError("the rows of a segment must follow its articles' order")
        article_rows = np.zeros(len(articles) + 1, dtype=np.int64)
        np.cumsum(np.bincount(row_article, minlength=len(articles)), out=article_rows[1:])
        vocab: dict[str, int] = {}

        def ids(words: Sequence[str]) -> list[int]:
            return [vocab.setdefault(w, len(vocab)) for w in words]

        token_ids, token_rows = _ragged([ids(t) for t in tokens])
        # A sentence's set, in first-seen order: the reranker makes a frozenset of it again.
        per_sentence = [ids(list(dict.fromkeys(s))) for row in sentences for s in row]
        sentence_ids, sentence_tokens = _ragged(per_sentence)
        title_ids, title_tokens = _ragged([ids(t) for t in titles])
        people_ids, people_rows = _ragged([ids(people) for people, _ in names])
        place_ids, place_rows = _ragged([ids(places) for _, places in names])
        sentence_rows = np.zeros(len(chunks) + 1, dtype=np.int64)
        np.cumsum(
            np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences)), out=sentence_rows[1:]
        )
        records = [json.dumps(article_to_json(a, d), ensure_ascii=False).encode("utf-8") for a, d in articles]
        article_json, article_offsets = _strings(records)
        doc_ids = _bytes_array([a.doc_id.encode("utf-8") for a, _ in articles])
        headings, heading_offsets = _strings([c.heading.encode("utf-8") for c in chunks])
        title_text, title_offsets = _strings([a.title.encode("utf-8") for a, _ in articles])
        # Ids in hash order, so that a word is found by a binary search of the hashes.
        encoded = [encode_term(w) for w in vocab]
        hashes = np.fromiter(map(term_hash, encoded), dtype=np.uint64, count=len(encoded))
        order = np.argsort(hashes, kind="stable")
        renumber = np.empty(len(encoded), dtype=np.int32)
        renumber[order] = np.arange(len(encoded), dtype=np.int32)
        token_ids, sentence_ids, title_ids = renumber[token_ids], renumber[sentence_ids], renumber[title_ids]
        people_ids, place_ids = renumber[people_ids], renumber[place_ids]
        words, word_offsets = _strings([encoded[i] for i in order.tolist()])
        pairs = _pair_counts(tokens)
        stored_pairs = sorted(pairs)
        arrays: dict[str, Array] = {
            "article_json": article_json,
            "article_offsets": article_offsets,
            "doc_ids": doc_ids,
            "doc_order": np.argsort(doc_ids, kind="stable").astype(np.int64),
            "hashes": _bytes_array([d.encode("ascii") for _, d in articles]),
            "dates": _bytes_array([NO_DATE if a.date is None else a.date.encode() for a, _ in articles]),
            "text_lengths": np.array([len(a.text) for a, _ in articles], dtype=np.int64),
            "article_rows": article_rows,
            "row_article": row_article,
            "row_section": np.array([SECTIONS.index(c.section) for c in chunks], dtype=np.uint8),
            "row_start": np.array([c.start for c in chunks], dtype=np.int64),
            "row_end": np.array([c.end for c in chunks], dtype=np.int64),
            "headings": headings,
            "heading_offsets": heading_offsets,
            "vocab": words,
            "vocab_offsets": word_offsets,
            "vocab_hashes": hashes[order],
            "token_ids": token_ids,
            "token_rows": token_rows,
            "sentence_rows": sentence_rows,
            "sentence_ids": sentence_ids,
            "sentence_tokens": sentence_tokens,
            "titles": title_text,
            "title_offsets": title_offsets,
            "title_ids": title_ids,
            "title_tokens": title_tokens,
            "people_ids": people_ids,
            "people_rows": people_rows,
            "place_ids": place_ids,
            "place_rows": place_rows,
            "pairs": np.array(stored_pairs, dtype="U2"),
            "pair_rows": np.array([pairs[p] for p in stored_pairs], dtype=np.int64),
        }
        tables = cls(arrays)
        tables.check()
        return tables

    def save(self, folder: Path) -> None:
        """Write the tables into a segment's folder (not yet sealed) as one file: the arrays, each at a
        multiple of 64 bytes, then a JSON footer naming each one's dtype, offset and length, then the
        footer's length and a magic number (as Parquet lays out its footer)."""
        footer: dict[str, list[Any]] = {}
        with open(folder / TABLE_FILE, "wb") as out:
            for name in _FILES:
                data = np.ascontiguousarray(self._a[name])
                footer[name] = [data.dtype.str, out.tell(), int(data.size)]
                out.write(data.tobytes())
                out.write(b"\0" * (-out.tell() % _ALIGN))
            raw = json.dumps(footer).encode("ascii")
            out.write(raw + len(raw).to_bytes(8, "little") + _MAGIC)

    # -- reading -------------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: Path) -> Tables:
        """The tables of a sealed segment, mapped. ValueError when the file is missing or does not fit."""
        path = folder / TABLE_FILE
        tail = 8 + len(_MAGIC)
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < tail:
                    raise ValueError("too short")
                handle.seek(size - tail)
                end = handle.read(tail)
                length = int.from_bytes(end[:8], "little")
                if not end.endswith(_MAGIC) or length > size - tail:
                    raise ValueError("not a table file")
                handle.seek(size - tail - length)
                footer = json.loads(handle.read(length).decode("ascii"))
                handle.seek(0)
                # A map holds a file descriptor while it lives: small tables (most writes' segments) are
                # read instead, so that many segments never run a process out of descriptors.
                data: bytes | mmap.mmap = (
                    handle.read()
                    if size < _MAP_AT
                    else mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
                )
        except FileNotFoundError as error:
            raise ValueError(f"segment table {path} is missing") from error
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise ValueError(f"segment table {path} is unreadable: {error}") from error
        if not isinstance(footer, dict) or set(footer) != set(_FILES):
            raise ValueError(f"segment table {path} does not hold the arrays of this version")
        arrays: dict[str, Array] = {}
        for name, kind in _FILES.items():
            try:
                code, offset, count = footer[name]
                dtype = np.dtype(str(code))
                offset, count = int(offset), int(count)
            except (ValueError, TypeError) as error:
                raise ValueError(f"segment table {path}: {name} is described wrongly") from error
            if dtype.kind != kind[0] or (len(kind) > 1 and dtype.str[1:] != kind) or dtype.hasobject:
                raise ValueError(f"segment table {path}: {name} is a {dtype} array")
            if offset < 0 or count < 0 or offset + count * dtype.itemsize > size - tail - length:
                raise ValueError(f"segment table {path}: {name} lies outside the file")
            arrays[name] = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
        tables = cls(arrays)
        tables.check()
        return tables

    def check(self) -> None:
        """Sizes and offsets that agree, every row inside its article's text: vectorised, so that
        loading touches only the small per-row arrays, never the text or the tokens."""
        a, rows, count = self._a, self.rows, self.count

        def fits(offsets: Array, size: int, blob: Array) -> bool:
            return bool(
                offsets.size == size + 1
                and offsets[0] == 0
                and offsets[-1] == blob.size
                and np.all(np.diff(offsets) >= 0)
            )

        sentences = int(a["sentence_rows"][-1]) if a["sentence_rows"].size else -1
        ok = (
            count > 0
            and all(a[n].size == count for n in ("doc_order", "hashes", "dates", "text_lengths"))
            and all(a[n].size == rows for n in ("row_section", "row_start", "row_end"))
            and a["pairs"].size == a["pair_rows"].size
            and fits(a["article_offsets"], count, a["article_json"])
            and fits(a["heading_offsets"], rows, a["headings"])
            and fits(a["title_offsets"], count, a["titles"])
            and fits(a["title_tokens"], count, a["title_ids"])
            and fits(a["token_rows"], rows, a["token_ids"])
            and fits(a["people_rows"], rows, a["people_ids"])
            and fits(a["place_rows"], rows, a["place_ids"])
            and fits(a["sentence_rows"], rows, np.empty(max(sentences, 0)))
            and fits(a["sentence_tokens"], max(sentences, 0), a["sentence_ids"])
            and a["article_rows"].size == count + 1
            and a["article_rows"][0] == 0
            and a["article_rows"][-1] == rows
            and np.array_equal(np.sort(a["doc_order"]), np.arange(count))
        )
        if ok and rows:
            article = a["row_article"]
            words = a["vocab_offsets"].size - 1
            ok = bool(
                article.min() >= 0
                and article.max() < count
                and np.all(np.diff(article) >= 0)
                and np.array_equal(np.bincount(article, minlength=count), np.diff(a["article_rows"]))
                and a["row_section"].max() < len(SECTIONS)
                and np.all(a["row_start"] >= 0)
                and np.all(a["row_start"] < a["row_end"])
                and np.all(a["row_end"] <= a["text_lengths"][article])
                and words >= 0
                and a["vocab_hashes"].size == words
                and bool(np.all(a["vocab_hashes"][1:] >= a["vocab_hashes"][:-1]))
                and (a["token_ids"].size == 0 or (a["token_ids"].min() >= 0 and a["token_ids"].max() < words))
                and (
                    a["sentence_ids"].size == 0
                    or (a["sentence_ids"].min() >= 0 and a["sentence_ids"].max() < words)
                )
                and all(
                    a[n].size == 0 or (a[n].min() >= 0 and a[n].max() < words)
                    for n in ("title_ids", "people_ids", "place_ids")
                )
            )
        if not ok:
            raise ValueError("the segment's tables do not agree with each other")

    def _record(self, i: int) -> dict[str, Any]:
        """The article's stored JSON record, checked against its doc_id and text length."""
        offsets = self._a["article_offsets"]
        raw = self._a["article_json"][int(offsets[i]) : int(offsets[i + 1])].tobytes()
        record = json.loads(raw.decode("utf-8"))
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("text"), str)
            or record.get("doc_id") != self.doc_id(i)
            or len(record["text"]) != int(self._a["text_lengths"][i])
        ):
            raise ValueError(f"article {i} of the segment does not match its doc_id or length")
        return record

    def _article(self, i: int) -> tuple[Article, str]:
        return article_from_json(self._record(i))

    def _text(self, i: int) -> str:
        """The article's text alone, for its passages: no ``Article`` built (a question reads a few dozen
        candidates' passages, most from articles not read before)."""
        text: str = self._record(i)["text"]
        return text

    def doc_id(self, i: int) -> str:
        return bytes(self._a["doc_ids"][i]).decode("utf-8")

    def title(self, i: int) -> str:
        """The article's title, read without its record."""
        offsets = self._a["title_offsets"]
        return self._a["titles"][int(offsets[i]) : int(offsets[i + 1])].tobytes().decode("utf-8")

    def title_tokens(self, i: int) -> list[str]:
        """The BM25 tokens of the article's title, in order."""
        bounds = self._a["title_tokens"]
        return self._words(self._a["title_ids"][int(bounds[i]) : int(bounds[i + 1])])

    def doc_ids_array(self) -> Array:
        """Every article's doc_id as UTF-8, in row order (the mapped array)."""
        return self._a["doc_ids"]

    def doc_ids(self) -> list[str]:
        """Every article's doc_id, in row order."""
        return [bytes(v).decode("utf-8") for v in self._a["doc_ids"].tolist()]

    def hashes(self) -> list[str]:
        """Every article's hash, in row order."""
        return [bytes(v).decode("ascii") for v in self._a["hashes"].tolist()]

    def hashes_array(self) -> Array:
        """Every article's hash as ASCII, in row order (the mapped array)."""
        return self._a["hashes"]

    def hash(self, i: int) -> str:
        return bytes(self._a["hashes"][i]).decode("ascii")

    def _find(self, doc_id: str) -> int | None:
        """The position of the article ``doc_id``, or None (a binary search of the sorted doc_ids)."""
        key = doc_id.encode("utf-8", "surrogatepass")
        ids, order = self._a["doc_ids"], self._a["doc_order"]
        if len(key) > ids.dtype.itemsize or key.endswith(b"\0"):
            return None
        lo, hi = 0, self.count
        while lo < hi:  # over the order, not a sorted copy: nothing is built at load
            mid = (lo + hi) // 2
            if bytes(ids[order[mid]]) < key:
                lo = mid + 1
            else:
                hi = mid
        if lo < self.count and bytes(ids[order[lo]]) == key:
            return int(order[lo])
        return None

    def dates(self) -> Array:
        """Every article's date as UTF-8 (``NO_DATE`` when it states none), in row order (the mapped array)."""
        return self._a["dates"]

    def span(self, i: int) -> tuple[int, int]:
        """The article's rows: (first, how many)."""
        first, end = self._a["article_rows"][i : i + 2].tolist()
        return int(first), int(end - first)

    def row_articles(self) -> Array:
        """The article of every row (the mapped array)."""
        return self._a["row_article"]

    def section(self, row: int) -> Section:
        """The row's section, read without its chunk (whose text comes from the article's record)."""
        return SECTIONS[int(self._a["row_section"][row])]

    def _chunk(self, row: int) -> Chunk:
        a = self._a
        i = int(a["row_article"][row])
        text = self._article_text(i)
        start, end = int(a["row_start"][row]), int(a["row_end"][row])
        h = a["heading_offsets"]
        heading = a["headings"][int(h[row]) : int(h[row + 1])].tobytes().decode("utf-8")
        return Chunk(self.doc_id(i), self.section(row), start, end, text[start:end], heading)

    def _decode_word(self, i: int) -> str:
        return self._word_bytes(i).decode("utf-8", "surrogatepass")

    def _words(self, ids: Array) -> list[str]:
        cache = self._word_cache
        if len(cache) > WORD_CACHE:
            cache.clear()
        out = []
        for i in ids.tolist():
            word = cache.get(i)
            if word is None:
                word = cache[i] = self._decode_word(i)
            out.append(word)
        return out

    def tokens(self, row: int) -> list[str]:
        """The row's BM25 tokens, in order."""
        bounds = self._a["token_rows"]
        return self._words(self._a["token_ids"][int(bounds[row]) : int(bounds[row + 1])])

    def names(self, row: int) -> tuple[frozenset[str], frozenset[str]]:
        """The people and the places named in the row, as the tagger found them when it was written."""
        a = self._a
        people, places = a["people_rows"], a["place_rows"]
        return (
            frozenset(self._words(a["people_ids"][int(people[row]) : int(people[row + 1])])),
            frozenset(self._words(a["place_ids"][int(places[row]) : int(places[row + 1])])),
        )

    def sentences(self, row: int) -> tuple[frozenset[str], ...]:
        """The token set of each sentence of the row, in order."""
        first, end = self._a["sentence_rows"][row : row + 2].tolist()
        bounds = self._a["sentence_tokens"][first : end + 1].tolist()
        if len(bounds) < 2:
            return ()
        base = bounds[0]
        words = self._words(self._a["sentence_ids"][base : bounds[-1]])  # the row's words in one read
        return tuple(frozenset(words[b - base : e - base]) for b, e in pairwise(bounds))

    def word_ids(self, words: Sequence[bytes], hashes: Array) -> Array:
        """The id of each word (UTF-8, as :func:`encode_term` writes it, with its :func:`term_hash`), -1
        for a word the segment does not hold: a binary search of the hashes, confirmed on the bytes."""
        found = np.full(len(words), -1, dtype=np.int64)
        table = self._a["vocab_hashes"]
        if not table.size:
            return found
        starts = np.searchsorted(table, hashes).tolist()
        for i, (word, key, start) in enumerate(zip(words, hashes.tolist(), starts, strict=True)):
            at = confirm(table, start, key, word, self._word_bytes)
            if at is not None:
                found[i] = at
        return found

    def _word_bytes(self, i: int) -> bytes:
        offsets = self._a["vocab_offsets"]
        return bytes(self._a["vocab"][int(offsets[i]) : int(offsets[i + 1])])

    def presence(self, rows: Array, ids: Array) -> tuple[Array, Array, Array, Array]:
        """Which of the words ``ids`` (one a column; -1: a word the segment lacks, never present) each
        sentence and each whole passage of ``rows`` holds, and the title of each row's article, read off
        the stored ids in a few vectorised passes: (how many sentences each row has, sentences × words,
        rows × words, rows × words for the titles), the sentences of the rows in turn."""
        a = self._a
        rows = np.asarray(rows, dtype=np.int64)
        columns = np.flatnonzero(ids >= 0)
        order = np.argsort(ids[columns], kind="stable")
        wanted, columns = ids[columns][order], columns[order]
        first, end = a["sentence_rows"][rows], a["sentence_rows"][rows + 1]
        counts = end - first
        sentences = ranges(first, end)
        in_sentence = np.zeros((sentences.size, ids.size), dtype=np.bool_)
        in_passage = np.zeros((rows.size, ids.size), dtype=np.bool_)
        in_title = np.zeros((rows.size, ids.size), dtype=np.bool_)
        if wanted.size:
            bounds = a["sentence_tokens"]
            _mark(in_sentence, a["sentence_ids"], bounds[sentences], bounds[sentences + 1], wanted, columns)
            _mark(
                in_passage, a["token_ids"], a["token_rows"][rows], a["token_rows"][rows + 1], wanted, columns
            )
            articles = a["row_article"][rows]
            titles = a["title_tokens"]
            _mark(in_title, a["title_ids"], titles[articles], titles[articles + 1], wanted, columns)
        return counts, in_sentence, in_passage, in_title

    def pair_counts(self, pairs: Sequence[str]) -> Array:
        """In how many of the segment's rows (dead ones too) each of ``pairs`` occurs, in one binary
        search of the stored pairs (int64)."""
        stored = self._a["pairs"]
        out = np.zeros(len(pairs), dtype=np.int64)
        two = [i for i, pair in enumerate(pairs) if len(pair) == 2]  # a longer string would be cut to two
        if not two or not stored.size:
            return out
        wanted = np.array([pairs[i] for i in two], dtype="U2")
        at = np.minimum(np.searchsorted(stored, wanted), stored.size - 1)
        found = stored[at] == wanted
        out[np.array(two)[found]] = self._a["pair_rows"][at[found]]
        return out

    def pair_chars(self) -> frozenset[str]:
        """The characters of every pair the segment holds."""
        pairs = self._a["pairs"]
        if not pairs.size:
            return frozenset()
        return frozenset(np.unique(pairs.view("U1")).tolist()) - {""}
