"""What kind of thing a "which …" question asks for, and whether a passage names one.

"王暾毕业于哪所大学?" is answered only by a passage that names a university; "事故发生在哪家矿业公司?"
only by one that names a company. A passage about the right person or accident that names none does not
answer, however well it matches the rest of the question: that is how near-miss questions ask for what
an article never says.

Only categories whose members are written with a recognisable head noun are checked (…大学, …医院,
…公司); a question asking for a boat, a song or a person is left to the other checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Category:
    noun: str  # as the question writes it: 大学
    member: re.Pattern[str]  # how a passage names one: 中国科学技术大学, 清华大学


def _member(heads: str) -> re.Pattern[str]:
    # A name before the head noun: at least one other character, so 大学 alone ("上大学") is no member.
    return re.compile(rf"[\u4e00-\u9fffA-Za-z0-9]({heads})")


_HEADS = {
    "大学": _member("大学|学院"),
    "学校": _member("学校|中学|小学|大学|学院|幼儿园"),
    "医院": _member("医院|卫生院"),
    # not …企业: "发生事故的企业" names no company
    "公司": _member("公司|集团|股份|银行"),
    "企业": _member("公司|集团|股份|企业"),
    "银行": _member("银行"),
    "法院": _member("法院"),
    "机场": _member("机场"),
    "酒店": _member("酒店|宾馆|饭店"),
}
# 哪所大学, 哪家医院, 哪家矿业公司, 什么公司: the head noun right after the question word (and a few
# characters of qualifier in between).
_ASK = re.compile(
    r"(?:哪|什么)(?:一)?(?:所|家|个|间|座)?[\u4e00-\u9fff]{0,3}?(大学|学校|医院|公司|企业|银行|法院|机场|酒店)"
)


# Two kinds of answer named without a head noun. A nationality: 菲律宾籍, 英国人, 来自肯尼亚的; not 外籍
# ("a foreign passenger" says which country no more than the question does). A surname: 陈某, 李先生,
# 姓王, or a name with its role (司机陈志明 is not caught: a surname question is usually about someone the
# article keeps anonymous, 涉案司机, so a passage that gives none does not answer).
_NATIONALITY = re.compile(
    r"(?![外户原党学书古典祖入国的其有无双多])[\u4e00-\u9fff]籍(?!贯)"
    r"|(?![的其有无双多外])[\u4e00-\u9fff]国籍"
    r"|[\u4e00-\u9fff]国(?:人|公民|男子|女子|游客|乘客|选手|商人|留学生)"
    r"|来自[\u4e00-\u9fff]{2,6}的"
)
_SURNAME = re.compile(
    r"姓(?![什啥名])[\u4e00-\u9fff]|[\u4e00-\u9fff](?:某某?|先生|女士|小姐|师傅|老师|阿姨|大爷|警官)"
    r"|[\u4e00-\u9fff]姓(?:男子|女子|司机|老人|乘客|村民)"
)
_ASK_NATIONALITY = re.compile(r"哪(?:一)?(?:个)?国(?:家)?(?:人|籍|的)|什么国籍|国籍是(?:哪|什么)")
_ASK_SURNAME = re.compile(r"姓什么|姓啥|什么姓")


def asked_category(question: str) -> Category | None:
    """The category a folded question asks for, when it is one of those checked."""
    if _ASK_NATIONALITY.search(question):
        return Category("国籍", _NATIONALITY)
    if _ASK_SURNAME.search(question):
        return Category("姓氏", _SURNAME)
    match = _ASK.search(question)
    if match is None:
        return None
    noun = match.group(1)
    return Category(noun, _HEADS[noun])


def names_one(category: Category, text: str, question: str) -> bool:
    """``text`` (folded) names a member of the category other than those the question itself names: a
    member whose last characters (up to three before the head noun, and the head) the question holds is
    the question's own (the company it is about), not an answer."""
    for match in category.member.finditer(text):
        head = match.start(1) if category.member.groups else match.start()
        if text[max(0, head - 3) : match.end()] not in question:
            return True
    return False


# "多少平方米", "几名", "多少亿元": the unit of the asked quantity, and the units that answer it.
_FAMILIES = (
    ("平方米|平米|平方公里|平方千米|亩|公顷", "平方米|平米|平方公里|平方千米|亩|公顷"),
    ("公斤|千克|吨|克", "公斤|千克|吨|克|斤"),
    ("公里|千米|米|厘米|毫米", "公里|千米|米|厘米|毫米"),
    (
        "亿元|万元|元|美元|欧元|英镑|日元|韩元|泰铢|澳元|港元|越南盾",
        "元|美元|欧元|英镑|日元|韩元|泰铢|澳元|港元|越南盾|块钱",
    ),
    ("岁", "岁"),
    ("小时|分钟|秒", "小时|分钟|秒|天"),
)
# 37万余元, 9.7万元, 三千多名, 1,200 元: the figure, then any multipliers and 余/多 in either order
_NUMERAL = r"(?:\d[\d.,]*|[零〇一二两三四五六七八九十百千]+)[\s多余万亿千百]*"


@dataclass(frozen=True)
class Quantity:
    unit: str  # as the question writes it: 平方米
    answer: re.Pattern[str]  # a number in one of the units that answer it


_MONEY = _FAMILIES[3][1]
# A price asked without its unit: 多少钱, 售价是多少, 罚款多少.
_PRICE = r"(多少钱)|(?:价格|售价|价钱|票价|罚款|罚金|赔偿金|奖金|身价|报价|定价|预售价)(?:是|为|约|大约|达到?)?(多少)"


# A result asked for (跑出了什么成绩, 用时多少): a time (2小时10分, 1:05:23), a score (6-4, 3比1) or a
# measured result (8.95米, 98分).
_RESULT = r"(什么成绩|成绩(?:是|为)多少|用时多[少久]|什么比分|比分是多少)"
_RESULT_ANSWER = (
    r"\d+(?:小时|分钟?|秒)|\d{1,2}:\d{2}|\d+\s?[-比:]\s?\d+|\d+(?:\.\d+)?(?:米|分|环|秒)"
    r"|[一二三四五六七八九十]+(?:小时|分钟)"
)


def _quantities() -> list[tuple[str, re.Pattern[str], re.Pattern[str]]]:
    by_unit = [
        ("", re.compile(rf"(?:多少|几)(?:万|亿)?({asked})"), re.compile(rf"{_NUMERAL}(?:{answers})"))
        for asked, answers in _FAMILIES
    ]
    return [
        *by_unit,
        ("元", re.compile(_PRICE), re.compile(rf"{_NUMERAL}(?:{_MONEY})")),
        ("时间或比分", re.compile(_RESULT), re.compile(_RESULT_ANSWER)),
    ]


_QUANTITIES = _quantities()


def asked_quantity(question: str) -> Quantity | None:
    """The unit a folded "how many …" question asks its number in, when it is one of those checked."""
    for unit, asked, answer in _QUANTITIES:
        match = asked.search(question)
        if match is not None:
            return Quantity(unit or match.group(1), answer)
    return None


def gives_quantity(quantity: Quantity, text: str) -> bool:
    """``text`` (folded) gives a number in a unit that answers the question."""
    return quantity.answer.search(text) is not None


# The measure word of a "how many" question (多少户, 几头, 多少家会员单位) and the size a "how tall / far /
# heavy" question asks for: what the number that answers it is written with. A ranking signal, weaker
# than the quantities above: 多少人 may be answered by 200余名, so it only prefers, it never refuses.
_MEASURE = re.compile(
    rf"(?:多少|几)(?:万|亿|千|百)?([{re.escape('户家人名位个次件辆台起场条项种届期天年岁倍套只头张卷集层座栋所篇部批瓶处回')}])"
)
_SIZES = (
    (re.compile(r"多[高深]"), "米|厘米|毫米|英尺|英寸"),  # a height is not 40多公里 away
    (re.compile(r"多[长远宽]|多少米"), _FAMILIES[2][1]),
    (re.compile(r"多[重沉](?!的?刑)"), _FAMILIES[1][1]),  # not 判了多重的刑: a sentence
    (re.compile(r"什么价|多少钱"), _MONEY),
)


@lru_cache(maxsize=1024)
def asked_measure(question: str) -> re.Pattern[str] | None:
    """How a number answering the folded question is written (a number with its unit), when it says."""
    quantity = asked_quantity(question)
    if quantity is not None:
        return quantity.answer
    for asked, answers in _SIZES:
        if asked.search(question):
            return re.compile(rf"{_NUMERAL}(?:{answers})")
    match = _MEASURE.search(question)
    if match is not None:
        unit = match.group(1)
        words = "人|名|位|人次" if unit in "人名位" else "次|回" if unit in "次回" else unit
        return re.compile(rf"{_NUMERAL}(?:{words})")
    return None
