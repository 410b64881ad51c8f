"""Publication dates as news pages, feeds and page metadata write them → ``yyyy-mm-dd``, or None.

Chinese and numeric formats are read by the patterns here first (``2025年1月21日 15:44``,
``2025-01-21 15:44``, ``21-01-2025``, ``15:44 | 21/01/2025``, ``发布时间：…``); ``dateparser`` is the
fallback for free-form metadata values only (``Tue, 21 Jan 2025``, ``January 21, 2025``), with relative
expressions (``昨天``, ``3 days ago``) refused. A date is never invented: no day, no date.

Numeric dates with the day first (``21-01-2025``, ``21/01/2025``) follow the Vietnamese and European
order of the corpus's sources; year-first dates are always year-month-day.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from qa.text.normalize import fold

log = logging.getLogger(__name__)

_TIME = r"\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:\s*(?:z|[+-]\d{2}:?\d{2}))?"
_YMD_CN = r"(?P<y1>\d{4})\s*年\s*(?P<m1>\d{1,2})\s*月\s*(?P<d1>\d{1,2})\s*日"
_YMD = r"(?P<y2>\d{4})[-/.](?P<m2>\d{1,2})[-/.](?P<d2>\d{1,2})"
_DMY = r"(?P<d3>\d{1,2})[-/.](?P<m3>\d{1,2})[-/.](?P<y3>\d{4})"
_DATE = rf"(?:{_YMD_CN}|{_YMD}|{_DMY})"
# Anywhere in a value (a feed's or a <meta>'s): the first date written in one of the formats above.
_ANY_DATE = re.compile(rf"(?<!\d){_DATE}(?!\d)")
# A whole line that is a dateline: an optional label, the date with its time before or after it, an
# optional weekday and an optional source credit ("来源：越通社").
_LABEL = r"(?:(?:发布|发表|更新|出版|稿件)?(?:时间|日期)|发布于|published|date)\s*[:：]?\s*"
_WEEKDAY = r"(?:星期|周|礼拜)[一二三四五六日天]"
_DATELINE = re.compile(
    rf"^(?:{_LABEL})?(?:{_TIME}\s*[|｜]?\s*)?{_DATE}(?:t|\s)*(?:{_TIME})?\s*(?:{_WEEKDAY})?"
    rf"(?:\s*(?:来源|作者|编辑|责任编辑)\s*[:：].{{0,40}})?$",
    re.IGNORECASE,
)


def _valid(year: str, month: str, day: str) -> str | None:
    try:
        return date(int(year), int(month), int(day)).isoformat()
    except ValueError:
        return None  # 31 February: never invented


def _from_match(match: re.Match[str]) -> str | None:
    groups = match.groupdict()
    for n in ("1", "2", "3"):
        if groups[f"y{n}"] is not None:
            return _valid(groups[f"y{n}"], groups[f"m{n}"], groups[f"d{n}"])
    return None


def _times_valid(text: str) -> bool:
    """Every ``hh:mm`` in the line is a time of day (``25:00`` is not a dateline)."""
    return all(int(h) <= 23 and int(m) <= 59 for h, m in re.findall(r"(\d{1,2}):(\d{2})", text))


def dateline_date(line: str) -> str | None:
    """The date of a line that holds nothing but a dateline (``2025年01月21日 15:44``, ``发布时间：
    2025-01-21``, ``15:44 | 21/01/2025``); None for any other line, such as a sentence that starts
    with a date."""
    text = fold(line).strip()
    if len(text) > 80:
        return None
    match = _DATELINE.match(text)
    if match is None or not _times_valid(text):
        return None
    return _from_match(match)


def _dateparser(value: str) -> str | None:
    if not re.search(r"\d", value):
        return None  # "yesterday", "昨天": relative, never a publication date
    try:
        import dateparser
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    settings: Any = {
        "PARSERS": ["custom-formats", "absolute-time"],  # no "3 days ago", no bare timestamps
        "REQUIRE_PARTS": ["day", "month", "year"],
        "STRICT_PARSING": True,
        "PREFER_DAY_OF_MONTH": "first",
        "DATE_ORDER": "DMY",
    }
    try:
        parsed = dateparser.parse(value, languages=["zh", "en", "vi"], settings=settings)
    except Exception as exc:  # dateparser raises odd errors for odd strings
        log.debug("dateparser failed on %r: %s", value, exc)
        return None
    return parsed.date().isoformat() if parsed is not None else None


def parse_date(value: object) -> str | None:
    """A date from a metadata value (a feed's ``published``, ``<meta content>``, JSON-LD
    ``datePublished``, a JSONL ``date``): the first date written in a known format, else an RFC 822
    date (its own day, not shifted to UTC), else what ``dateparser`` reads; None when none is there."""
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        return None
    text = fold(value).strip()
    match = _ANY_DATE.search(text)
    if match is not None:
        return _from_match(match)
    try:
        return parsedate_to_datetime(value.strip()).date().isoformat()
    except (TypeError, ValueError, IndexError):
        pass
    return _dateparser(value.strip())


_RELATIVE = re.compile(r"^(\d{1,5})\s*([dwmy])$", re.IGNORECASE)


def since_date(value: str, today: date | None = None) -> str:
    """``--since`` → the first day to include: ``7d`` (days), ``2w`` (weeks), ``3m`` (months, as 30
    days), ``1y`` (years, as 365 days) before ``today``, or an explicit ``yyyy-mm-dd``. ValueError
    for anything else."""
    today = today or datetime.now().date()
    match = _RELATIVE.match(value.strip())
    if match is not None:
        days = int(match.group(1)) * {"d": 1, "w": 7, "m": 30, "y": 365}[match.group(2).lower()]
        try:
            return (today - timedelta(days=days)).isoformat()
        except OverflowError:
            return date.min.isoformat()
    iso = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", value.strip())
    if iso is not None and (day := _valid(*iso.groups())) is not None:
        return day
    raise ValueError(f"expected a span such as 7d, 2w, 3m or 1y, or a date YYYY-MM-DD, got {value!r}")
