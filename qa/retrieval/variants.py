"""Spellings of one transliterated name derived from the corpus: same surname character, same sound.

Chinese renderings of Vietnamese and other foreign names vary (范明政 / 范明正, 何炜 / 何巍). Besides the
configured alias table, a name in a question also matches every string of the corpus that starts with
the same character and reads the same in toneless pinyin. Candidates are grown one character at a time
from the corpus's own character pairs, so word segmentation (which may split an unknown name) does not
matter and the search stays small.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable

from pypinyin import lazy_pinyin

from qa.retrieval.query import Query
from qa.text.normalize import is_cjk

MAX_CANDIDATES = 64


class NameVariants:
    def __init__(self, vocabulary: Iterable[str]) -> None:
        """``vocabulary``: the BM25 tokens; character pairs are the ones written ``#XY``."""
        self._pairs = {t[1:] for t in vocabulary if t.startswith("#") and len(t) == 3}
        self._by_sound: dict[str, set[str]] | None = None

    def warm(self) -> None:
        """Build the sound map now rather than on the first question that names someone."""
        self._chars_by_sound()

    def _chars_by_sound(self) -> dict[str, set[str]]:
        if self._by_sound is None:
            chars = {c for pair in self._pairs for c in pair if is_cjk(c)}
            by_sound: dict[str, set[str]] = defaultdict(set)
            for char, sound in zip(sorted(chars), lazy_pinyin(sorted(chars)), strict=True):
                by_sound[sound].add(char)
            self._by_sound = by_sound
        return self._by_sound

    def of(self, name: str) -> list[str]:
        """Other spellings of ``name`` that the corpus contains."""
        if not (2 <= len(name) <= 4 and all(is_cjk(c) for c in name)):
            return []
        by_sound = self._chars_by_sound()
        candidates = [name[0]]
        for sound in lazy_pinyin(name[1:]):
            options = by_sound.get(sound, set())
            candidates = [c + o for c in candidates for o in sorted(options) if c[-1] + o in self._pairs]
            candidates = candidates[:MAX_CANDIDATES]
        return [c for c in candidates if c != name]

    def expand(self, query: Query) -> Query:
        """The query with derived spellings added to its names and its lexical tokens."""
        groups: list[tuple[str, ...]] = []
        tokens = list(query.tokens)
        for group in query.entities:
            derived = [v for v in self.of(group[0]) if v not in group]
            groups.append(group + tuple(derived))
            for variant in derived:
                tokens += [variant] + ["#" + variant[i : i + 2] for i in range(len(variant) - 1)]
        if len(tokens) == len(query.tokens):
            return query
        return dataclasses.replace(query, entities=groups, tokens=tokens)
