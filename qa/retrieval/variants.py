"""Spellings of one transliterated name derived from the corpus: same surname character, same sound.

Chinese renderings of Vietnamese and other foreign names vary (范明政 / 范明正, 何炜 / 何巍). Besides the
configured alias table, a name in a question also matches every string of the corpus that starts with
the same character and reads the same in toneless pinyin. Candidates are grown one character at a time
from the corpus's own character pairs, so word segmentation (which may split an unknown name) does not
matter and the search stays small.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from pypinyin import lazy_pinyin

from qa.index.search_index import SearchIndex, SegmentTables
from qa.retrieval.query import Query
from qa.text.normalize import is_cjk
from qa.text.tokenize import pair_tokens

MAX_CANDIDATES = 64


@lru_cache(maxsize=65536)
def _sound(char: str) -> str:
    """A character's toneless default reading (the character itself when pypinyin has none)."""
    return lazy_pinyin([char])[0]


def _pairs(token_lists: Iterable[Sequence[str]]) -> Counter[str]:
    """In how many rows each character pair (the BM25 tokens written ``#XY``) occurs."""
    counts: Counter[str] = Counter()
    for tokens in token_lists:
        counts.update({t[1:] for t in tokens if len(t) == 3 and t.startswith("#")})
    return counts


class _SegmentPairs:
    """One segment's pairs, as its tables count them (every row); a segment never changes, so a new
    snapshot reuses this."""

    def __init__(self, tables: SegmentTables) -> None:
        self.seal = tables.seal
        self.tables = tables
        self.chars = frozenset(c for c in tables.tables.pair_chars() if is_cjk(c))
        self._dead: tuple[frozenset[str], Counter[str]] = (frozenset(), Counter())

    def live(self, dead: frozenset[str]) -> _LivePairs:
        """The pairs some live row holds, when ``dead`` are the segment's dead articles."""
        known, counted = self._dead
        if dead != known:
            # A write only adds tombstones: count the new ones' rows, not every dead row again.
            more = dead - known if known <= dead else dead
            spans = [s for s in map(self.tables.span, more) if s is not None]
            rows = (
                self.tables.tables.tokens(r) for first, count in spans for r in range(first, first + count)
            )
            self._dead = (dead, (counted + _pairs(rows)) if known <= dead else _pairs(rows))
        return _LivePairs(self.tables.tables.pair_counts, self._dead[1])


@dataclasses.dataclass(frozen=True)
class _LivePairs:
    counts: Callable[[Sequence[str]], npt.NDArray[np.int64]]  # rows holding each pair
    dead: Counter[str]  # dead rows holding it

    def live_counts(self, pairs: Sequence[str]) -> npt.NDArray[np.int64]:
        dead = np.fromiter((self.dead.get(p, 0) for p in pairs), dtype=np.int64, count=len(pairs))
        return self.counts(pairs) - dead


class CorpusPairs:
    """The character pairs the live passages of one snapshot hold, and their characters."""

    def __init__(
        self, live: Sequence[_LivePairs], chars: set[str], segments: dict[str, _SegmentPairs] | None = None
    ) -> None:
        self._live = tuple(live)
        self.chars = chars
        self.segments = segments or {}

    @classmethod
    def of_index(cls, index: SearchIndex, previous: CorpusPairs | None = None) -> CorpusPairs:
        """The pairs of ``index``'s segments; those it shares with ``previous`` are not counted again."""
        if not index.segments:  # an index assembled in memory: every row is live
            return cls.of_tokens(t for tokens in index.tokens for t in tokens)
        known = previous.segments if previous is not None else {}
        refs = {r.name: r.dead for r in index.manifest.segments} if index.manifest else {}
        segments: dict[str, _SegmentPairs] = {}
        live: list[_LivePairs] = []
        chars: set[str] = set()
        for tables in index.segments:
            entry = known.get(tables.name)
            if entry is None or entry.seal != tables.seal:
                entry = _SegmentPairs(tables)
            segments[tables.name] = entry
            live.append(entry.live(refs.get(tables.name, frozenset())))
            chars |= entry.chars
        return cls(live, chars, segments)

    @classmethod
    def of_tokens(cls, tokens: Iterable[str]) -> CorpusPairs:
        """The pairs of a plain vocabulary (BM25 tokens), as if one live row held them all."""
        counts = _pairs([list(tokens)])

        def count(pairs: Sequence[str]) -> npt.NDArray[np.int64]:
            return np.fromiter((counts.get(p, 0) for p in pairs), dtype=np.int64, count=len(pairs))

        return cls(
            [_LivePairs(count, Counter())],
            {c for c in set("".join(counts)) if is_cjk(c)},
        )

    def __contains__(self, pair: str) -> bool:
        return self.count(pair) > 0

    def holding(self, pairs: Sequence[str]) -> list[bool]:
        """Whether some live passage holds each of ``pairs`` (one lookup per segment for them all)."""
        return [n > 0 for n in self.counts(pairs)]

    def count(self, pair: str) -> int:
        """In how many live passages the pair occurs."""
        return self.counts([pair])[0]

    def counts(self, pairs: Sequence[str]) -> list[int]:
        """``count`` of each of ``pairs`` (one lookup per segment for them all)."""
        total = np.zeros(len(pairs), dtype=np.int64)
        for live in self._live:
            total += live.live_counts(pairs)
        return [int(n) for n in total]


class NameVariants:
    def __init__(self, pairs: CorpusPairs) -> None:
        """``pairs``: the character pairs of the snapshot's passages."""
        self._pairs = pairs
        self._by_sound: dict[str, list[str]] | None = None

    def warm(self) -> None:
        """Build the sound map now rather than on the first question that names someone."""
        self._chars_by_sound()

    def _chars_by_sound(self) -> dict[str, list[str]]:
        if self._by_sound is None:
            by_sound: dict[str, list[str]] = defaultdict(list)
            for char in sorted(self._pairs.chars):
                by_sound[_sound(char)].append(char)
            self._by_sound = by_sound
        return self._by_sound

    def of(self, name: str) -> list[str]:
        """Other spellings of ``name`` that the corpus contains."""
        if not (2 <= len(name) <= 4 and all(is_cjk(c) for c in name)):
            return []
        by_sound = self._chars_by_sound()
        candidates = [name[0]]
        for sound in lazy_pinyin(name[1:]):
            options = by_sound.get(sound, [])
            tried = [c + o for c in candidates for o in options]
            held = self._pairs.holding([t[-2:] for t in tried])
            candidates = [t for t, h in zip(tried, held, strict=True) if h][:MAX_CANDIDATES]
        return [c for c in candidates if c != name]

    def expand(self, query: Query) -> Query:
        """The query with derived spellings added to its names and its lexical tokens."""
        groups: list[tuple[str, ...]] = []
        tokens = list(query.tokens)
        for group in query.entities:
            derived = [v for v in self.of(group[0]) if v not in group]
            groups.append(group + tuple(derived))
            for variant in derived:
                tokens += [variant, *pair_tokens(variant)]
        if len(tokens) == len(query.tokens):
            return query
        return dataclasses.replace(query, entities=groups, tokens=tokens)
