"""Named places, organisations and leaders in Chinese, English and Vietnamese.

Used two ways: an English or Vietnamese name in a question adds its Chinese name to the lexical query
(cross-lingual matching), and every non-generic name a question mentions must appear in a cited passage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from qa.text.normalize import fold
from qa.text.tokenize import GENERIC_ENTITIES

BUNDLED = Path(__file__).resolve().parent.parent / "data" / "gazetteer.tsv"
_LATIN = "a-z0-9\u00c0-\u024f\u1e00-\u1eff"


@dataclass(frozen=True)
class Place:
    names: tuple[str, ...]  # Chinese spellings, folded; the first is the usual one
    generic: bool


class Gazetteer:
    def __init__(self, path: Path = BUNDLED) -> None:
        self._zh: dict[str, Place] = {}
        self._foreign: list[tuple[re.Pattern[str], Place]] = []
        self._words: set[str] = set()  # the foreign names written as one word
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            cells = [*line.split("\t"), "", "", "", "0"][:4]
            place = Place(tuple(fold(n) for n in cells[0].split("|") if n), cells[3].strip() == "1")
            for name in place.names:
                self._zh[name] = place
            for foreign in [n for cell in cells[1:3] for n in cell.split("|") if n.strip()]:
                self._words.update([fold(foreign)] if " " not in foreign.strip() else [])
                pattern = re.compile(rf"(?<![{_LATIN}]){re.escape(fold(foreign))}(?![{_LATIN}])")
                self._foreign.append((pattern, place))
        self._longest_first = sorted(self._zh, key=len, reverse=True)

    def generic(self, name: str) -> bool:
        """Too common to be what a question is about (中国, 越南, 中越 ...)."""
        folded = fold(name)
        place = self._zh.get(folded)
        return (place is not None and place.generic) or folded in GENERIC_ENTITIES

    def knows(self, word: str) -> bool:
        """``word`` is an English or Vietnamese name of a place listed here."""
        return fold(word) in self._words

    def in_words(self, words: list[str]) -> list[Place]:
        """Places named by jieba words of a Chinese question (a word may start with one: 日本首相)."""
        found: list[Place] = []
        for word in words:
            for name in self._longest_first:
                if word.startswith(name) and len(name) >= 2:
                    place = self._zh[name]
                    if place not in found:
                        found.append(place)
                    break
        return found

    def in_foreign_text(self, text: str) -> list[Place]:
        """Places named in English or Vietnamese text."""
        folded = fold(text)
        found: list[Place] = []
        for pattern, place in self._foreign:
            if place not in found and pattern.search(folded):
                found.append(place)
        return found


GLOSSARY = Path(__file__).resolve().parent.parent / "data" / "glossary.tsv"


class Glossary:
    """Common news words in English and Vietnamese with their Chinese: dictionary-based query translation."""

    def __init__(self, path: Path = GLOSSARY) -> None:
        self._entries: list[tuple[re.Pattern[str], tuple[str, ...]]] = []
        self._words: set[str] = set()  # the entries written as one word
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            zh, *foreign = [*line.split("\t"), "", ""][:3]
            renderings = tuple(fold(w) for w in zh.split("|") if w.strip())
            for name in (n for cell in foreign for n in cell.split("|") if n.strip()):
                self._words.update([fold(name)] if " " not in name.strip() else [])
                pattern = re.compile(rf"(?<![{_LATIN}]){re.escape(fold(name))}(?![{_LATIN}])")
                self._entries.append((pattern, renderings))
        # Longer phrases first, so "vice mayor" wins over "mayor".
        self._entries.sort(key=lambda entry: -len(entry[0].pattern))

    def knows(self, word: str) -> bool:
        """``word`` is an English or Vietnamese entry of the glossary."""
        return fold(word) in self._words

    def translate(self, text: str) -> list[str]:
        """Chinese renderings of the English or Vietnamese words and phrases of ``text``."""
        folded = fold(text)
        found: list[str] = []
        for pattern, renderings in self._entries:
            match = pattern.search(folded)
            if match:
                folded = folded[: match.start()] + " " + folded[match.end() :]
                found.extend(w for w in renderings if w not in found)
        return found
