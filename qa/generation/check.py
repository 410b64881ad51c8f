"""Whether the passages a sentence cites support it, checked lexically on folded text.

A sentence is kept only when it cites at least one passage, every number it cites exists, and the cited
passages (with their titles and dates) hold each of its numbers (dates are numbers too, part by part),
names (people, places, organisations; any configured alias or corpus-derived spelling counts) and
quoted words — after the folding retrieval uses (NFKC, Traditional → Simplified, lower case). A Chinese
sentence must also share ``min_overlap`` of its character pairs with them. This cannot prove a
paraphrase true: it catches invented figures, names and quotes, and citations that point elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from qa.generation.sentences import canonical, markers, strip_markers
from qa.records import Hit
from qa.retrieval.gazetteer import Gazetteer
from qa.retrieval.query import AliasTable
from qa.text.normalize import char_bigrams, cjk_ratio, fold, is_cjk
from qa.text.numerals import chinese_number
from qa.text.tokenize import ChineseTokenizer

_ARABIC = re.compile(r"\d+(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_CN_DIGITS = "零〇一二两三四五六七八九"
_CN_RUN = re.compile(f"[{_CN_DIGITS}十百千万亿]+")
# A Chinese numeral in a sentence counts as a figure only before a measure word (一些, 十分 are words).
_MEASURE = re.compile(r"\s*(?:个|名|位|家|项|次|倍|年|岁|元|人|座|条|所|届|周年|天|月|日|号|%|％|多|余)")
_QUOTED = re.compile(r"[“「『《‘\"](.+?)[”」』》’\"]")  # not ' (an apostrophe: China's)
_ADMIN_SUFFIX = ("市", "省", "县", "区", "镇", "乡")
_COMMON_TAGS = frozenset({"nr", "nz"})
_COMMON_WORD = 500  # jieba dictionary frequency above which a word is everyday vocabulary


def _value(text: str) -> str:
    """A number written as digits, in one canonical form (1,900 → 1900; 01 → 1; 1.50 → 1.5)."""
    try:
        number = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return text
    return format(number.normalize(), "f") if number != number.to_integral() else str(int(number))


def numbers_in(text: str, *, all_chinese: bool) -> list[tuple[str, str]]:
    """(as written, canonical value) of the figures in folded ``text``; Chinese numerals too — every
    run when ``all_chinese`` (what a passage may hold), else only before a measure word."""
    found = [(m.group(), _value(m.group())) for m in _ARABIC.finditer(text)]
    for match in _CN_RUN.finditer(text):
        if not all_chinese and not _MEASURE.match(text, match.end()):
            continue
        value = chinese_number(match.group())
        if value is not None and (all_chinese or len(match.group()) > 1 or match.group() not in "一两"):
            found.append((match.group(), str(value)))
    return found


@dataclass(frozen=True)
class Evidence:
    """One numbered passage as the check reads it: its folded text (with title and date), spaces removed."""

    number: int
    text: str
    numbers: frozenset[str]
    pairs: frozenset[str]

    @classmethod
    def of(cls, number: int, hit: Hit) -> Evidence:
        folded = fold(" ".join([hit.title, hit.date or "", hit.chunk.heading, hit.chunk.text]))
        text = "".join(folded.split())
        values = frozenset(v for _, v in numbers_in(folded, all_chinese=True))
        return cls(number, text, values, frozenset(char_bigrams(text)))


@dataclass(frozen=True)
class Verdict:
    sentence: str  # as the user sees it when kept: markers written [1][2]
    cited: tuple[int, ...]
    reason: str | None  # None when supported

    @property
    def supported(self) -> bool:
        return self.reason is None


class SentenceChecker:
    def __init__(
        self,
        tokenizer: ChineseTokenizer,
        aliases: AliasTable,
        gazetteer: Gazetteer,
        min_overlap: float = 0.25,
    ) -> None:
        self.tokenizer = tokenizer
        self.aliases = aliases
        self.gazetteer = gazetteer
        self.min_overlap = min_overlap

    def check(
        self,
        sentence: str,
        evidence: Sequence[Evidence],
        spellings: Callable[[str], Iterable[str]] | None = None,
    ) -> Verdict:
        """``evidence[n-1]`` is passage [n]; ``spellings``: more spellings of a name (the corpus's)."""
        shown = canonical(sentence)
        cited = tuple(markers(sentence))
        if not cited:
            return Verdict(shown, cited, "no citation marker")
        wrong = [n for n in cited if not 1 <= n <= len(evidence)]
        if wrong:
            return Verdict(shown, cited, f"cites [{wrong[0]}], but there are {len(evidence)} passages")
        sources = [evidence[n - 1] for n in cited]
        where = "".join(f"[{n}]" for n in cited)
        claim = fold(strip_markers(sentence))
        flat = "".join(claim.split())
        values = set().union(*(e.numbers for e in sources))
        for written, value in numbers_in(claim, all_chinese=False):
            if value not in values:
                return Verdict(shown, cited, f"number {written} is not in {where}")
        for quote in _QUOTED.findall(claim):
            quoted = "".join(quote.split())
            if quoted and not any(quoted in e.text for e in sources):
                return Verdict(shown, cited, f"quoted “{quote}” is not in {where}")
        for name in self._names(claim):
            if not any(self._holds(e.text, name, spellings) for e in sources):
                return Verdict(shown, cited, f"name {name} is not in {where}")
        if self.min_overlap > 0 and cjk_ratio(flat) >= 0.3:
            pairs = {p for p in char_bigrams(flat) if all(is_cjk(c) for c in p)}
            shared = len(pairs & set().union(*(e.pairs for e in sources))) / len(pairs) if pairs else 1.0
            if shared < self.min_overlap:
                return Verdict(shown, cited, f"shares only {shared:.0%} of its wording with {where}")
        return Verdict(shown, cited, None)

    def _names(self, claim: str) -> list[str]:
        """Names of people, places and organisations, and Latin terms, in the sentence (folded)."""
        if cjk_ratio(claim) >= 0.3:
            names = [n for n in self.tokenizer.entities(claim) if not n.isdigit()]
            tags = dict(self.tokenizer.tagged(claim))
            return [
                n
                for n in names
                if not self.gazetteer.generic(n)
                # jieba tags some everyday words as names (友谊 nr, 和平 nz): a frequent dictionary word
                # tagged person or "other proper noun" is a name only when the alias table or gazetteer
                # knows it
                and not (
                    tags.get(n) in _COMMON_TAGS
                    and self.tokenizer.frequency(n) > _COMMON_WORD
                    and self.aliases.variants(n) == (n,)
                    and not self.gazetteer.in_words([n])
                )
            ]
        # English, Vietnamese …: only places the gazetteer can name in Chinese are checked
        return [p.names[0] for p in self.gazetteer.in_foreign_text(claim) if not p.generic]

    def _holds(self, text: str, name: str, spellings: Callable[[str], Iterable[str]] | None) -> bool:
        options = {name, *self.aliases.variants(name)}
        if name.endswith(_ADMIN_SUFFIX) and len(name) > 2:
            options.add(name[:-1])
        if spellings is not None:
            options.update(fold(s) for s in spellings(name))
        for place in self.gazetteer.in_words([name]):  # 胡志明市 / 西贡 …
            options.update(place.names)
        return any(option and option in text for option in options)
