"""BM25 over immutable segments, with statistics taken over the whole live corpus.

A write appends a small segment instead of rebuilding one index, and the rows of a replaced or deleted
passage are masked dead (tombstoned) rather than rewritten. A segment is a ``Postings``: its own inverted
index (term frequencies and row lengths, no scores), saved as plain ``.npy`` arrays and memory-mapped on
load. Its terms are ordered by a stable 64-bit hash, so a lookup is a binary search of the mapped hashes,
confirmed against the mapped UTF-8 vocabulary: loading builds nothing per term or per row.

``SegmentedBM25`` scores a query over an ordered list of segments and their live masks. N, document
frequencies and the mean length are those of the live rows of all segments, computed per query from the
postings, so a score depends neither on how the corpus is split nor on its dead rows; the arithmetic is
bm25s's default ("lucene") BM25, float for float, so scores equal ``LexicalIndex``'s.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from qa.embeddings.npyio import PreadArray, load_npy
from qa.text import terms as _terms
from qa.text.terms import encode_term

EMPTY_DOC = "\u0000"  # a token that stands for "no tokens": such a row has length 1 and matches nothing

Mask = npt.NDArray[np.bool_]
Numbers = npt.NDArray[np.int64]  # global rows

# The files of a saved segment (name.npy) and their dtypes; all are one-dimensional.
PREAD_AT = 1 << 20  # postings this large are read with pread (PreadArray), smaller ones through the map
# A token's rows and score shares are kept for the next question that asks for it, up to this many
# bytes in all (least recently used first out): distinct questions share their common words, and those
# have the longest postings (two thirds of the postings 600 distinct questions read at 75k passages).
SHARES_CACHE_BYTES = 32 << 20
FREQUENCIES = 65536  # terms whose document frequency is kept (then the table is emptied)
_DTYPES = {
    "indptr": np.dtype(np.int64),  # term t's postings are rows[indptr[t]:indptr[t + 1]]
    "rows": np.dtype(np.int32),  # ascending within a term
    "tf": np.dtype(np.int32),
    "lengths": np.dtype(np.int32),  # tokens per row; an empty row counts 1, as EMPTY_DOC does in bm25s
    "term_hashes": np.dtype(np.uint64),  # ascending: term ids are in hash order
    "terms": np.dtype(np.uint8),  # the UTF-8 of every term, in term order
    "term_offsets": np.dtype(np.int64),  # term t is terms[term_offsets[t]:term_offsets[t + 1]]
}


class _Key(NamedTuple):
    """A token as segments look it up: hashed once per query, not once per segment."""

    text: bytes
    hash: np.uint64


def _key(token: str) -> _Key:
    text = encode_term(token)
    return _Key(text, np.uint64(_terms.term_hash(text)))


class Postings:
    """One segment's inverted index over its rows 0..n-1: for each term, the rows holding it and how often."""

    def __init__(
        self,
        *,
        indptr: npt.NDArray[np.int64],
        rows: npt.NDArray[np.int32],
        tf: npt.NDArray[np.int32],
        lengths: npt.NDArray[np.int32],
        term_hashes: npt.NDArray[np.uint64],
        terms: npt.NDArray[np.uint8],
        term_offsets: npt.NDArray[np.int64],
    ) -> None:
        self._indptr = indptr
        self._rows = rows
        self._tf = tf
        self._lengths = lengths
        self._hashes = term_hashes
        self._terms = terms
        self._offsets = term_offsets
        # A loaded segment's postings, read with pread (see PreadArray): (rows, tf), else None.
        self._read: tuple[PreadArray, PreadArray] | None = None

    @classmethod
    def build(cls, token_lists: Sequence[Sequence[str]]) -> Postings:
        """Row i holds token_lists[i]; an empty row has length 1 and matches nothing, as in LexicalIndex."""
        n = len(token_lists)
        counts = np.fromiter(map(len, token_lists), dtype=np.int64, count=n)
        ids: dict[str, int] = {}
        flat = np.fromiter(
            (ids.setdefault(token, len(ids)) for tokens in token_lists for token in tokens),
            dtype=np.int64,
            count=int(counts.sum()),
        )
        owner = np.repeat(np.arange(n, dtype=np.int64), counts)
        words = list(ids)
        encoded = [encode_term(word) for word in words]
        hashes = np.fromiter((_terms.term_hash(text) for text in encoded), dtype=np.uint64, count=len(words))
        order = np.argsort(hashes, kind="stable")
        if EMPTY_DOC in ids:
            # It counts in a row's length, as in bm25s, but no query may match it.
            empty = ids[EMPTY_DOC]
            order = order[order != empty]
            kept = flat != empty
            flat, owner = flat[kept], owner[kept]
        term_of = np.full(len(words), -1, dtype=np.int64)  # EMPTY_DOC keeps -1, and is never looked up
        term_of[order] = np.arange(order.size)
        # One key per (term, row) sorts the postings by term, then row, and counts their frequencies.
        pairs, tf = np.unique(term_of[flat] * max(n, 1) + owner, return_counts=True)
        return cls.from_pairs(pairs, tf, counts, [encoded[i] for i in order.tolist()], hashes[order])

    @classmethod
    def from_pairs(
        cls,
        pairs: npt.NDArray[np.int64],
        tf: npt.NDArray[np.integer[Any]],
        counts: npt.NDArray[np.int64],
        terms: Sequence[bytes],
        term_hashes: npt.NDArray[np.uint64],
    ) -> Postings:
        """The postings of sorted unique keys ``term * rows + row`` with their frequencies ``tf``, for
        rows of ``counts`` tokens and the encoded ``terms`` in hash order (``term_hashes``)."""
        n = len(counts)
        term, row = np.divmod(pairs, max(n, 1))
        indptr = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term, minlength=len(terms)), out=indptr[1:])
        offsets = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, terms), dtype=np.int64, count=len(terms)), out=offsets[1:])
        return cls(
            indptr=indptr,
            rows=row.astype(np.int32),
            tf=tf.astype(np.int32),
            lengths=np.maximum(counts, 1).astype(np.int32),
            term_hashes=term_hashes,
            terms=np.frombuffer(b"".join(terms), dtype=np.uint8),
            term_offsets=offsets,
        )

    def _arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        return {
            "indptr": self._indptr,
            "rows": self._rows,
            "tf": self._tf,
            "lengths": self._lengths,
            "term_hashes": self._hashes,
            "terms": self._terms,
            "term_offsets": self._offsets,
        }

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, array in self._arrays().items():
            np.save(directory / f"{name}.npy", array, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path) -> Postings:
        missing = [f"{name}.npy" for name in _DTYPES if not (directory / f"{name}.npy").is_file()]
        if missing:
            raise ValueError(f"BM25 segment {directory} lacks {', '.join(missing)}")
        arrays: dict[str, npt.NDArray[np.generic]] = {}
        readers: dict[str, PreadArray] = {}
        for name, dtype in _DTYPES.items():
            path = directory / f"{name}.npy"
            try:
                array = load_npy(path, mmap_mode="r")
            except (ValueError, EOFError) as error:  # not an .npy file, cut short, or empty
                raise ValueError(f"BM25 segment file {path} is unreadable: {error}") from error
            if array.dtype != dtype or array.ndim != 1:
                raise ValueError(
                    f"BM25 segment file {path} holds a {array.ndim}-d {array.dtype} array, not 1-d {dtype}"
                )
            if name in ("rows", "tf") and isinstance(array, np.memmap) and array.nbytes >= PREAD_AT:
                readers[name] = PreadArray(path, array)
            # A plain view of the map: np.memmap's own indexing costs a microsecond per lookup.
            arrays[name] = np.asarray(array)
        postings = cls(**arrays)  # type: ignore[arg-type]  # the dtypes were checked above
        postings._check(directory)
        if len(readers) == 2:
            postings._read = (readers["rows"], readers["tf"])
        return postings

    def _check(self, directory: Path) -> None:
        """Shapes that agree; O(1), so that loading touches no page of the postings."""
        terms = self._hashes.size
        if not (
            self._indptr.size == self._offsets.size == terms + 1
            and self._indptr[0] == 0
            and self._indptr[-1] == self._rows.size == self._tf.size
            and self._offsets[0] == 0
            and self._offsets[-1] == self._terms.size
        ):
            sizes = ", ".join(f"{name} {array.size}" for name, array in self._arrays().items())
            raise ValueError(f"BM25 segment {directory} is inconsistent: array sizes {sizes}")

    def __len__(self) -> int:
        return int(self._lengths.size)

    @property
    def lengths(self) -> npt.NDArray[np.int32]:
        return self._lengths

    def term_id(self, token: str) -> int | None:
        return self._find(_key(token))

    def _find(self, key: _Key) -> int | None:
        start = int(self._hashes.searchsorted(key.hash))
        return _terms.confirm(self._hashes, start, int(key.hash), key.text, self._term_bytes)

    def _term_bytes(self, term: int) -> bytes:
        return self._terms[self._offsets[term] : self._offsets[term + 1]].tobytes()

    def knows(self, token: str) -> bool:
        return self.term_id(token) is not None

    def postings(self, term_id: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """The rows holding the term, ascending, and how often each holds it."""
        start, end = self._indptr[term_id : term_id + 2].tolist()
        if self._read is not None:
            rows, tf = self._read
            return rows.range(start, end), tf.range(start, end)
        return self._rows[start:end], self._tf[start:end]

    def vocabulary(self, live: Mask | None = None) -> list[str]:
        """The segment's terms, in term order; only those some live row holds when ``live`` is given."""
        starts, ends = self._offsets[:-1], self._offsets[1:]
        if live is not None and self._hashes.size:
            # Every term has postings, so reduceat sees no empty run.
            held = np.logical_or.reduceat(live[self._rows], self._indptr[:-1])
            starts, ends = starts[held], ends[held]
        blob = self._terms.tobytes()
        return [
            blob[a:b].decode("utf-8", "surrogatepass")
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
        ]


@dataclass(frozen=True)
class _Part:
    postings: Postings
    live: Mask | None  # None when every row is live
    base: int  # the global number of the segment's first live row
    numbers: Numbers | None  # local row -> global row (dead: the sink), when some rows are dead


def _checked_live(postings: Postings, live: Mask | None) -> Mask | None:
    """The live mask of a segment, None when every row is live."""
    if live is None:
        return None
    if live.dtype != np.bool_ or live.shape != (len(postings),):
        raise ValueError(f"a live mask must be {len(postings)} booleans, not {live.shape} of {live.dtype}")
    return None if live.all() else live


_ENTRY_OVERHEAD = 256  # bytes a cached token's entry costs beside its arrays


def _entry_bytes(shares: tuple[Numbers, npt.NDArray[np.float32]]) -> int:
    """What a cached token costs: its two arrays and the entry itself (so that the tokens no row holds,
    whose arrays are empty, count too)."""
    return shares[0].nbytes + shares[1].nbytes + _ENTRY_OVERHEAD


class SegmentedBM25:
    """Corpus-wide BM25 over segments; global rows number the live rows of segment 0, then 1, and so on.

    Dead rows are scored too, into a sink slot one past the last row: counting them out of a document
    frequency is cheaper than filtering them out of every posting list.
    """

    def __init__(
        self, parts: Sequence[tuple[Postings, Mask | None]], *, k1: float = 1.5, b: float = 0.75
    ) -> None:
        checked = [(postings, _checked_live(postings, live)) for postings, live in parts]
        lengths = [postings.lengths if live is None else postings.lengths[live] for postings, live in checked]
        self._size = sum(live_lengths.size for live_lengths in lengths)
        self._parts: list[_Part] = []
        base = 0
        for (postings, live), live_lengths in zip(checked, lengths, strict=True):
            if live_lengths.size:
                numbers = None
                if live is not None:
                    numbers = np.where(live, np.cumsum(live, dtype=np.int64) + (base - 1), self._size)
                self._parts.append(_Part(postings, live, base, numbers))
            base += live_lengths.size
        # Questions, their reranking and their grounding ask the same terms' frequencies over and over;
        # a search keeps those it counts, so the reranker's IDF does not read their postings again.
        self._frequencies: dict[str, int] = {}
        self._cached: OrderedDict[str, tuple[Numbers, npt.NDArray[np.float32]]] = OrderedDict()
        self._cached_bytes = 0
        self._cache_lock = threading.Lock()
        # Global rows' lengths, then the sink's: 1 keeps its norm finite.
        row_lengths = np.concatenate([*lengths, np.ones(1, dtype=np.int32)])
        avgdl = float(row_lengths[:-1].sum(dtype=np.int64)) / self._size if self._size else 1.0
        # k1 * (1 - b + b * length / avgdl) of each global row, as bm25s computes it: scores match to the bit.
        self._norms = k1 * ((1 - b) + b * row_lengths / avgdl)

    def __len__(self) -> int:
        return self._size

    def _postings(self, token: str) -> tuple[Numbers, npt.NDArray[np.int32], int]:
        """The global rows holding the token (dead ones numbered as the sink), how often, and how many live."""
        key = _key(token)  # hashed once for all segments
        numbers: list[Numbers] = []
        frequencies: list[npt.NDArray[np.int32]] = []
        tombstones = False
        for part in self._parts:
            term = part.postings._find(key)
            if term is None:
                continue
            local, tf = part.postings.postings(term)
            if part.numbers is None:
                # int64: numpy adds at int64 indices several times faster than at int32 ones
                numbers.append(local + np.int64(part.base))
            else:
                numbers.append(part.numbers[local])
                tombstones = True
            frequencies.append(tf)
        if not numbers:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32), 0
        rows = numbers[0] if len(numbers) == 1 else np.concatenate(numbers)
        tf = frequencies[0] if len(frequencies) == 1 else np.concatenate(frequencies)
        dead = int(np.count_nonzero(rows == self._size)) if tombstones else 0
        return rows, tf, rows.size - dead

    def document_frequency(self, token: str) -> int:
        """In how many live rows the token occurs (cached: the segments and their masks never change)."""
        df = self._frequencies.get(token)
        if df is None:
            df = self._document_frequency(token)
            self._keep_frequency(token, df)
        return df

    def _keep_frequency(self, token: str, df: int) -> None:
        if len(self._frequencies) >= FREQUENCIES:
            self._frequencies.clear()
        self._frequencies[token] = df

    def _document_frequency(self, token: str) -> int:
        key = _key(token)
        df = 0
        for part in self._parts:
            term = part.postings._find(key)
            if term is not None:
                local = part.postings.postings(term)[0]
                df += int(local.size if part.live is None else np.count_nonzero(part.live[local]))
        return df

    def knows(self, token: str) -> bool:
        return self.document_frequency(token) > 0

    def vocabulary(self) -> list[str]:
        terms: dict[str, None] = {}
        for part in self._parts:
            terms.update(dict.fromkeys(part.postings.vocabulary(part.live)))
        return list(terms)

    def _shares(self, token: str) -> tuple[Numbers, npt.NDArray[np.float32]]:
        """The global rows holding the token and its share of their scores (read-only arrays, cached up
        to ``SHARES_CACHE_BYTES``: the segments and their masks never change)."""
        with self._cache_lock:
            found = self._cached.get(token)
            if found is not None:
                self._cached.move_to_end(token)
                return found
        found = self._computed_shares(token)
        for array in found:
            array.setflags(write=False)
        size = _entry_bytes(found)
        if size <= SHARES_CACHE_BYTES:
            with self._cache_lock:
                if token not in self._cached:
                    self._cached[token] = found
                    self._cached_bytes += size
                while self._cached_bytes > SHARES_CACHE_BYTES:
                    self._cached_bytes -= _entry_bytes(self._cached.popitem(last=False)[1])
        return found

    def _computed_shares(self, token: str) -> tuple[Numbers, npt.NDArray[np.float32]]:
        rows, tf, df = self._postings(token)
        self._keep_frequency(token, df)
        if not df:
            return rows[:0], np.zeros(0, dtype=np.float32)
        # bm25s keeps idf and each row's share as float32 and sums them in float32; the same steps in the
        # same order give its scores to the last bit.
        idf = np.float32(math.log(1 + (self._size - df + 0.5) / (df + 0.5)))
        frequency = tf.astype(np.float64)
        share = self._norms[rows]
        share += frequency
        np.divide(frequency, share, out=share)  # tf / (tf + k1 * (1 - b + b * length / avgdl))
        share *= idf
        return rows, share.astype(np.float32)

    def scores(self, tokens: Sequence[str]) -> npt.NDArray[np.float32]:
        """The BM25 score of every live row; each occurrence of a token counts, as in bm25s."""
        scores = np.zeros(self._size + 1, dtype=np.float32)  # the last slot is the dead rows' sink
        shares: dict[str, tuple[Numbers, npt.NDArray[np.float32]]] = {}
        for token in tokens:
            if token not in shares:
                shares[token] = self._shares(token)
        if not tokens:
            return scores[: self._size]
        # One add.at over every token's rows in the tokens' order: it adds element after element, so each
        # row's float32 sum runs in the same order as one add.at per token would (the same bits), without
        # a call per token.
        found = [shares[token] for token in tokens]
        rows = np.concatenate([rows for rows, _ in found])
        values = np.concatenate([values for _, values in found])
        np.add.at(scores, rows, values)
        return scores[: self._size]

    def search(self, tokens: Sequence[str], k: int, allowed: Mask | None = None) -> list[tuple[int, float]]:
        """The k best rows scoring above 0 (among ``allowed`` ones), best first; ties go to the lower row."""
        scores = self.scores(tokens)
        if allowed is not None and allowed.shape != scores.shape:
            raise ValueError(f"allowed must be a mask of {scores.size} rows, not {allowed.shape}")
        rows = np.flatnonzero(scores > 0)  # a scan of the score array, as cheap as allocating it
        if allowed is not None:
            rows = rows[np.asarray(allowed, dtype=bool)[rows]]
        if k <= 0 or not rows.size:
            return []
        found = scores[rows]
        if rows.size > k:
            # Keep every row scoring at least the k-th best, ties included, so that the stable sort below
            # breaks ties by row whichever of them the partition put first.
            kth = np.partition(found, rows.size - k)[rows.size - k]
            kept = found >= kth
            rows, found = rows[kept], found[kept]
        order = np.argsort(-found, kind="stable")[:k]
        return [(int(rows[i]), float(found[i])) for i in order]
