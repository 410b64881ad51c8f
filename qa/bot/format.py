"""Answers formatted for chat platforms: plain text or Telegram MarkdownV2, cut to a message-length limit.

The public API::

    from qa.bot import ask, format_answer

    reply = ask(engine, "胡志明市与中国多少个地方保持友好合作关系?", history=["earlier question"])
    for text in reply.messages(markdown=True, limit=4096):
        ...  # send each part as one message

    parts = format_answer(answer, markdown=False, limit=4096)  # an qa.records.Answer you already have

A formatted answer is a list of *blocks*, each kept whole in one message:

* the lines of the chat-style answer (``answer.text``, one line per cited sentence, with its ``[n]``
  marker; the "—— 《title》" source after the marker is left out, the citation block names it);
* one block per cited passage: the citation line ``[n] 《title》 date · section · doc_id:start-end`` and
  the quoted passage text under it. When the article has a link (``Hit.url``, http or https), the title
  is a link to it in MarkdownV2, and the plain text ends the citation line with the URL.

MarkdownV2 is escaped with python-telegram-bot's ``telegram.helpers.escape_markdown(version=2)`` (see
:mod:`qa.bot.ptb`); plain text needs no package beyond this one.

Messages are packed greedily with whole blocks. A block that is longer than the limit on its own gets its
quoted text cut with "…"; its citation line (or an answer line's ``[n]`` marker) is never cut.
Lengths are counted in UTF-16 code units, as Telegram counts them, on the text as sent (for MarkdownV2
the escaped text, which is never shorter than the text Telegram displays).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from qa.answer import NO_ANSWER
from qa.bot.ptb import escape, escape_code, escape_link
from qa.errors import QuestionError
from qa.records import Answer, Hit, Section

__all__ = [
    "BotReply",
    "QuestionAsker",
    "ask",
    "follow_up_note",
    "format_answer",
    "format_error",
    "format_passage",
    "format_sources",
    "link_target",
    "text_length",
]

ELLIPSIS = "…"
ANSWER_LABEL = "答 Answer："
SOURCES_HEADING = "来源 Sources"
NO_ANSWER_HEADING = "无法回答 No answer"
RELATED_LABEL = "相关新闻 related-news teaser"
MAX_URL_CHARS = 2000  # longer links are left out (the API accepts articles' URLs up to 2000 characters)
# "sentence [1] —— 《title》（date）": the sentence may be cut, the marker may not; the source after "——"
# is left out, since the citation block of [1] names it
_ANSWER_LINE = re.compile(r"^(?P<text>.*?)\s*(?P<marker>\[\d+\])(?:\s*——.*)?$", re.DOTALL)


def text_length(text: str) -> int:
    """The length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


class QuestionAsker(Protocol):
    """What :func:`ask` needs of an engine (``qa.engine.Engine`` is one)."""

    def ask(self, question: str, *, history: Sequence[str] = ...) -> Answer: ...


@dataclass(frozen=True, slots=True)
class BotReply:
    """The result of one chat question: an answer, or why the question could not be asked."""

    question: str
    answer: Answer | None  # None when the question itself was rejected (empty, too long)
    error: str = ""
    history: tuple[str, ...] = ()  # the earlier questions it was asked with (a follow-up says so)

    @property
    def answerable(self) -> bool:
        return self.answer is not None and self.answer.answerable

    def messages(self, *, markdown: bool, limit: int) -> list[str]:
        """The messages to send, in order, each at most ``limit`` UTF-16 code units long."""
        if self.answer is None:
            return format_error(self.error, markdown=markdown, limit=limit)
        return format_answer(self.answer, markdown=markdown, limit=limit, follow_up=len(self.history))


def ask(engine: QuestionAsker, question: str, history: Sequence[str] = ()) -> BotReply:
    """Ask ``engine`` a chat question; ``history`` holds the chat's earlier questions, oldest first.

    A question the engine refuses (:class:`qa.errors.QuestionError`: empty, too long) becomes a reply
    carrying the reason; any other error propagates.
    """
    question = question.strip()
    try:
        answer = engine.ask(question, history=tuple(history))
    except QuestionError as exc:
        return BotReply(question=question, answer=None, error=str(exc))
    return BotReply(question=question, answer=answer, history=tuple(history))


# -- blocks ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Block:
    """Rendered text made of a fixed part and a cuttable part: ``render(cuttable)`` is the block's text."""

    cuttable: str
    render: Callable[[str], str]
    separator: str  # put before this block when it follows another block in the same message

    @property
    def text(self) -> str:
        return self.render(self.cuttable)

    def cut_to(self, limit: int) -> str:
        """The block with its cuttable text shortened (ending with "…") so that it fits in ``limit``."""
        if text_length(self.text) <= limit:
            return self.text
        low, high = 0, len(self.cuttable) - 1  # keep cuttable[:n] + "…"; find the largest n that fits
        if text_length(self.render(ELLIPSIS)) > limit:
            raise ValueError(
                f"a citation needs more than {limit} characters on its own; raise the message limit"
            )
        while low < high:
            middle = (low + high + 1) // 2
            if text_length(self.render(self._shortened(middle))) <= limit:
                low = middle
            else:
                high = middle - 1
        return self.render(self._shortened(low))

    def _shortened(self, n: int) -> str:
        kept = self.cuttable[:n]
        if kept and "\ud800" <= kept[-1] <= "\udbff":  # never keep half of a surrogate pair
            kept = kept[:-1]
        return kept.rstrip() + ELLIPSIS


class _Style:
    """How one output format writes each piece."""

    def __init__(self, markdown: bool) -> None:
        self.markdown = markdown

    def text(self, value: str) -> str:
        return escape(value) if self.markdown else value

    def bold(self, value: str) -> str:
        return f"*{escape(value)}*" if self.markdown else value

    def code(self, value: str) -> str:
        return f"`{escape_code(value)}`" if self.markdown else value

    def link(self, label: str, url: str) -> str:
        """``label`` linked to ``url`` (MarkdownV2); plain text has no links, the URL is shown apart."""
        return f"[{escape(label)}]({escape_link(url)})" if self.markdown else label

    def quote(self, value: str) -> str:
        if self.markdown:
            return ">" + escape(value)
        return f"  “{value}”"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def link_target(url: str | None) -> str | None:
    """``url`` when it can be sent as a link (http or https, a host, no spaces or control characters)."""
    if not url or len(url) > MAX_URL_CHARS or any(not char.isprintable() or char.isspace() for char in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in {"http", "https"} and parts.hostname else None


def _citation_line(number: int, hit: Hit, style: _Style) -> str:
    chunk = hit.chunk
    title = f"《{hit.title}》" if hit.title else "《无标题 untitled》"
    url = link_target(hit.url)
    parts = [style.bold(f"[{number}]"), style.link(title, url) if url else style.text(title)]
    details = []
    if hit.date:
        details.append(style.text(hit.date))
    if chunk.section is Section.RELATED:
        label = RELATED_LABEL + (f"：{chunk.heading}" if chunk.heading else "")
        details.append(style.text(label))
    details.append(style.code(f"{chunk.doc_id}:{chunk.start}-{chunk.end}"))
    if url and not style.markdown:
        details.append(url)
    return " ".join(parts) + " " + style.text(" · ").join(details)


def _answer_blocks(answer: Answer, style: _Style) -> list[_Block]:
    blocks: list[_Block] = []
    if not answer.answerable:
        text = answer.text or NO_ANSWER + (f"（{answer.reason}）" if answer.reason else "")
        heading = style.bold(NO_ANSWER_HEADING)
        blocks.append(_Block(_one_line(text), lambda s: heading + "\n" + style.text(s), ""))
        return blocks
    if answer.span is not None:  # the short answer first, in bold, marked with its passage [1]
        short = answer.span.text

        def render_short(s: str) -> str:
            return style.bold(f"{ANSWER_LABEL}{s}") + style.text(" [1]")

        blocks.append(_Block(short, render_short, ""))
    lines = [line for line in answer.text.splitlines() if line.strip()]
    for line in lines:
        match = _ANSWER_LINE.match(line.strip())
        body, tail = (match.group("text"), " " + match.group("marker")) if match else (line.strip(), "")

        def render(s: str, tail: str = tail) -> str:
            return style.text(s + tail)

        blocks.append(_Block(body, render, "" if not blocks else "\n"))
    for number, hit in enumerate(answer.hits, start=1):
        citation = _citation_line(number, hit, style)
        if number == 1:
            citation = style.bold(SOURCES_HEADING) + "\n" + citation

        def render_citation(s: str, citation: str = citation) -> str:
            return citation + "\n" + style.quote(s)

        blocks.append(_Block(_one_line(hit.chunk.text), render_citation, "\n\n" if blocks else ""))
    return blocks


def _pack(blocks: Sequence[_Block], limit: int) -> list[str]:
    if limit < 1:
        raise ValueError("the message limit must be positive")
    messages: list[str] = []
    current = ""
    for block in blocks:
        text = block.text
        if current and text_length(current) + text_length(block.separator + text) <= limit:
            current += block.separator + text
            continue
        if current:
            messages.append(current)
        current = block.cut_to(limit)
    if current:
        messages.append(current)
    return messages


def follow_up_note(earlier: int) -> str:
    """The last line of a follow-up's answer: how many earlier questions of the chat it used."""
    return f"↩ 参考了本对话之前的 {earlier} 个问题 · used {earlier} earlier question(s) · /new 重新开始 starts over"


def format_answer(answer: Answer, *, markdown: bool, limit: int, follow_up: int = 0) -> list[str]:
    """``answer`` as chat messages: plain text, or Telegram MarkdownV2 when ``markdown`` (all escaped).

    Each message is at most ``limit`` UTF-16 code units. Messages split only between whole blocks (an
    answer sentence, a citation with its quoted passage); a block too long on its own has its quoted text
    cut with "…" while its citation line stays whole. Every citation ``[1]..[n]`` (one per hit, in the
    order of ``answer.hits``, matching the ``[n]`` markers of ``answer.text``) appears exactly once across
    the messages. An abstention is one block: a "no answer" heading and the reason.

    A follow-up (``follow_up`` earlier questions of the chat used) ends with a line that says so: in a
    group, one member's question may shape another's answer.

    Raises ValueError when ``limit`` is too small to hold one citation line.
    """
    style = _Style(markdown)
    blocks = _answer_blocks(answer, style)
    if follow_up:
        blocks.append(_whole(style.text(follow_up_note(follow_up)), "\n\n"))
    return _pack(blocks, limit)


def format_error(message: str, *, markdown: bool, limit: int) -> list[str]:
    """A rejected question (e.g. too long) as chat messages, in the same style as :func:`format_answer`."""
    style = _Style(markdown)
    heading = style.bold("问题无效 Invalid question")
    block = _Block(_one_line(message), lambda s: heading + "\n" + style.text(s), "")
    return _pack([block], limit)


def format_sources(hits: Sequence[Hit], *, markdown: bool, limit: int) -> list[str]:
    """The citation lines of ``hits`` (numbered from 1) without their passages, e.g. for ``/sources``."""
    style = _Style(markdown)
    lines = [_citation_line(n, hit, style) for n, hit in enumerate(hits, start=1)]
    return _pack([_whole(line, "\n") for line in lines], limit)


def _whole(text: str, separator: str) -> _Block:
    """A block that is never cut (its cuttable part is empty)."""

    def render(_: str) -> str:
        return text

    return _Block("", render, separator)


def format_passage(number: int, hit: Hit, *, markdown: bool, limit: int) -> list[str]:
    """Passage ``number`` whole: its citation line and all of its text, over as many messages as it needs
    (the text is never cut short; each following message goes on quoting it)."""
    style = _Style(markdown)
    citation = _citation_line(number, hit, style)
    rest = hit.chunk.text.strip()
    messages: list[str] = []
    if not rest:
        return _pack([_whole(citation, "")], limit)
    while True:
        head = citation + "\n" if not messages else ""

        def render(s: str, head: str = head) -> str:
            return head + style.quote(s)

        fits = _longest_fitting(rest, render, limit)
        if fits == 0:
            raise ValueError(f"a citation needs more than {limit} characters on its own; raise the limit")
        messages.append(head + style.quote(rest[:fits]))
        rest = rest[fits:].lstrip()
        if not rest:
            return messages


def _longest_fitting(text: str, render: Callable[[str], str], limit: int) -> int:
    """The largest n such that ``render(text[:n])`` is at most ``limit`` UTF-16 units; 0 when not even one
    character fits."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if text_length(render(text[:middle])) <= limit:
            low = middle
        else:
            high = middle - 1
    return low
