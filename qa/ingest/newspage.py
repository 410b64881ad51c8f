"""Parse a scraped news page into an Article: title, dateline, body and related-news segments.

The pages look like this: a title, sometimes a dateline (``15:44 | 21/01/2025``, ``2025年1月21日``), the lead (often
repeated), image captions (``…图自越通社``), file names (``anh-3.png``), link titles of other articles on
one line, teaser blocks whose title is written twice (``X X``) followed by a summary, and after a marker
(``相关新闻``, ``更多``, ``查看更多``) a list of teasers of other articles. Lines are classified one by one;
kept lines with the same label that follow each other without a dropped line between them form a segment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from qa.ingest.dates import dateline_date
from qa.records import Article, Section, Segment
from qa.text.normalize import cjk_ratio, fold

ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})")
RELATED_MARKERS = frozenset({"相关新闻", "更多", "查看更多", "相关文章", "相关阅读", "延伸阅读", "更多新闻"})
NAVIGATION = frozenset({"新闻", "越通社", "(完)", "返回", "首页", "分享", "打印"})
CAPTION = re.compile(r"(?:图自|图片来源[:]?|图[:]|摄影[:]?)\s*[\w.\-/ ]{2,40}$")
IMAGE_FILE = re.compile(r"^[\w\-. ]+\.(?:png|jpe?g|gif|webp|bmp|svg)$", re.IGNORECASE)
SENTENCE_END = re.compile(r"[。!?…]\W*$")
WHITESPACE = " \t\r\f\v\u3000\ufeff\u200b"
LEAD_REPEAT_SLACK = 16  # a line that is an earlier lead plus this many characters (a dateline prefix)
TITLE_LIKE_MAX = 60


@dataclass(frozen=True, slots=True)
class Line:
    start: int
    end: int
    text: str

    @property
    def key(self) -> str:
        return re.sub(r"\s+", "", fold(self.text))


def split_lines(text: str) -> list[Line]:
    """Non-blank lines with offsets of their first and last non-space character."""
    lines: list[Line] = []
    pos = 0
    for raw in text.split("\n"):
        stripped = raw.strip(WHITESPACE)
        if stripped:
            start = pos + raw.index(stripped[0])
            lines.append(Line(start, start + len(stripped), stripped))
        pos += len(raw) + 1
    return lines


def parse_dateline(text: str) -> str | None:
    """A line that is only a dateline → ``yyyy-mm-dd`` (``15:44 | 21/01/2025``, ``2025年1月21日 15:44``,
    ``发布时间：2025-01-21``: see qa.ingest.dates); None when it is not a valid dateline."""
    return dateline_date(text)


def parse_iso_date(value: str | None) -> str | None:
    """An ISO date (or datetime) string → ``yyyy-mm-dd``; None for anything that is not one."""
    match = ISO_DATE.match((value or "").strip())
    if not match:
        return None
    try:
        return date(*(int(g) for g in match.groups())).isoformat()
    except ValueError:
        return None


def doubled_title(text: str) -> str | None:
    """``X X`` (a link title written twice on one line) → X."""
    parts = text.split()
    half = len(parts) // 2
    if len(parts) >= 2 and len(parts) % 2 == 0 and parts[:half] == parts[half:]:
        return " ".join(parts[:half])
    return None


def is_link_list(text: str) -> bool:
    """Several titles of other articles on one line, separated by spaces, none of them a sentence."""
    parts = text.split()
    return (
        len(parts) >= 2
        and "。" not in text
        and all(len(p) >= 6 and cjk_ratio(p) >= 0.6 and not SENTENCE_END.search(p) for p in parts)
    )


def is_boilerplate(line: Line) -> bool:
    text = fold(line.text)
    return (
        text in NAVIGATION
        or bool(CAPTION.search(text))
        or bool(IMAGE_FILE.match(text))
        or parse_dateline(text) is not None
    )


def title_like(text: str) -> bool:
    return len(text) <= TITLE_LIKE_MAX and not SENTENCE_END.search(fold(text)) and "。" not in text


class _PageParser:
    def __init__(self, text: str, title_line: Line | None) -> None:
        self.text = text
        self.segments: list[Segment] = []
        self.dropped = 0
        self.seen: set[str] = set()
        self.leads: list[str] = []
        self._open: tuple[Section, str, int, int] | None = None  # section, heading, start, end
        if title_line:
            self.seen.add(title_line.key)
            self.leads.append(title_line.key)

    def drop(self) -> None:
        self.dropped += 1
        self._close()

    def keep(self, line: Line, section: Section, heading: str = "") -> None:
        self.seen.add(line.key)
        if section is Section.BODY and len(self.leads) < 4:
            self.leads.append(line.key)
        if self._open and self._open[:2] == (section, heading):
            self._open = (section, heading, self._open[2], line.end)
        else:
            self._close()
            self._open = (section, heading, line.start, line.end)

    def _close(self) -> None:
        if self._open:
            section, heading, start, end = self._open
            self.segments.append(Segment(section, start, end, heading))
            self._open = None

    def is_repeat(self, line: Line) -> bool:
        key = line.key
        if key in self.seen:
            return True
        return any(
            len(lead) >= 12 and lead in key and len(key) - len(lead) <= LEAD_REPEAT_SLACK
            for lead in self.leads
        )

    def run(self, lines: list[Line]) -> None:
        in_related = False
        heading: Line | None = None  # a teaser title waiting for its summary
        for line in lines:
            key = line.key
            if key in RELATED_MARKERS:
                in_related, heading = True, None
                self.drop()
                continue
            if is_boilerplate(line) or self.is_repeat(line):
                self.drop()
                continue
            twice = doubled_title(line.text)
            if twice is not None:
                self._flush_heading(heading)
                first_half = line.text[: len(line.text) // 2].rstrip(WHITESPACE)
                heading = Line(line.start, line.start + len(first_half), twice)
                self.seen.add(heading.key)
                self.drop()
                continue
            if in_related and title_like(line.text):
                self._flush_heading(heading)
                heading = line
                self.seen.add(key)
                self.drop()
                continue
            if heading is not None:
                self.keep(line, Section.RELATED, heading.text)
                heading = None
            elif in_related or is_link_list(line.text):
                self.keep(line, Section.RELATED)
            else:
                self.keep(line, Section.BODY)
        self._flush_heading(heading)
        self._close()

    def _flush_heading(self, heading: Line | None) -> None:
        """A teaser title with no summary after it is kept as a related segment of its own."""
        if heading is not None:
            self._close()
            self.segments.append(Segment(Section.RELATED, heading.start, heading.end))


def parse_page(
    text: str,
    *,
    doc_id: str,
    source: str,
    title: str | None = None,
    date_iso: str | None = None,
    url: str | None = None,
) -> Article:
    """Turn one page's text into an Article. ``title``/``date_iso`` come from metadata when known."""
    lines = split_lines(text)
    title_line: Line | None = None
    if lines and (title is None or lines[0].key == Line(0, 0, title).key):
        title_line = lines.pop(0)
        title = title or title_line.text
    found_date = None
    for line in lines[:6]:
        found_date = parse_dateline(line.text)
        if found_date:
            break
    parser = _PageParser(text, title_line)
    parser.run(lines)
    if not (title or "").strip() and parser.segments:
        first = parser.segments[0]
        title = text[first.start : first.end].split("\n", 1)[0][:40]
    return Article(
        doc_id=doc_id,
        title=(title or "").strip(),
        date=date_iso or found_date,
        source=source,
        text=text,
        segments=tuple(parser.segments),
        url=url,
        dropped=parser.dropped + (1 if title_line else 0),
    )
