"""What tells one edition, phase or year of a story from another: 第13届 / 第14届, 一期 / 二期, 嫦娥四号 /
嫦娥五号, 2016年 / 2017年.

A near-miss question keeps the story and swaps its qualifier: it asks for the winner of the 13th regatta
when the corpus reports the 14th, or a company's 2016 revenue when the article gives 2017's. Such a
question names nothing the passage lacks, so the entity check passes it. But the passage names the same
kind of qualifier with another value, and never the asked one: that passage does not answer it.

Values are compared as numbers, so 第十三届 and 第13届 agree.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from qa.text.numerals import chinese_number

_NUMERAL = r"[0-9]+|[零〇一二两三四五六七八九十百千]+"

_PATTERNS = (
    # 第13届, 第十二批, 第八轮, 第二季: an edition or round
    re.compile(rf"第\s*(?P<n>{_NUMERAL})\s*(?P<kind>届|批|期|轮|季|场|次)"),
    # 一期 / 二期 (of a project), 一审 / 二审 (of a trial): a phase, written without 第
    re.compile(
        r"(?<![第0-9零〇一二两三四五六七八九十百千])(?P<n>[一二三四五六七八九]|[1-9])(?P<kind>期|审)(?![间限货刊待望])"
    ),
    # 嫦娥四号 / 嫦娥五号, 神舟十一号: a craft or model of a series, told apart by its series name
    re.compile(
        r"(?P<series>[\u4e00-\u9fff]{2})(?<!月)(?P<n>[一二三四五六七八九十]+)(?P<kind>号)(?![线楼院])"
    ),
    # 2016年, 2018赛季, 2018-2019赛季, 2018-05-01: a year
    re.compile(
        r"(?<![0-9])(?P<n>(?:19|20)[0-9]{2})(?:\s*(?P<kind>年|赛季)(?!代)|(?=[-/.][0-9]{1,2}[-/.][0-9]{1,2}))"
    ),
)


@dataclass(frozen=True)
class Qualifier:
    kind: str  # 届, 批, 期, 轮, 季, 场, 次 (editions); phase-期, phase-审 (phases); 嫦娥号 (a series); 年
    value: int
    text: str  # as written


def number(text: str) -> int | None:
    """13, 十三, 一百零五 → the number; None when ``text`` is not a plain numeral."""
    return int(text) if text.isdigit() else chinese_number(text)


def qualifiers(text: str) -> list[Qualifier]:
    """The qualifiers ``text`` (folded) names, in order."""
    found: list[Qualifier] = []
    for i, pattern in enumerate(_PATTERNS):
        for match in pattern.finditer(text):
            value = number(match.group("n"))
            if value is None:
                continue
            kind = match.group("kind") or "年"
            kind = {"赛季": "年"}.get(kind, kind)
            if i == 1:
                kind = "phase-" + kind  # 一期 (a phase) is not 第一期 (an issue)
            elif i == 2:
                kind = match.group("series") + kind
            found.append(Qualifier(kind, value, match.group()))
    return found


def conflicting(asked: Sequence[Qualifier], contexts: Sequence[str]) -> list[Qualifier]:
    """The asked qualifiers the passage contradicts. ``contexts`` go from the nearest (the passage) to the
    widest (its article's title and lead); the nearest one that names the same kind decides: it must
    name the asked value. In the widest, an article's edition is the one it names most: an article
    about the 5th book fair may compare it with the 4th, and still does not say where the 4th was held.
    Years stay lenient there (a report of 2017 gives 2016's figures for comparison)."""
    if not asked:
        return []
    named = [qualifiers(c) for c in contexts]
    wrong = []
    for q in asked:
        for level, found in enumerate(named):
            same = Counter(c.value for c in found if c.kind == q.kind)
            if not same:
                continue
            widest = level == len(named) - 1 and q.kind != "年"
            if q.value not in same or (widest and same[q.value] < max(same.values())):
                wrong.append(q)
            break
    return wrong
