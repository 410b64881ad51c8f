"""The typed records that flow one way through the service: Article → Segment → Chunk → Hit → Answer.

Every offset is a code-point offset into the article's source text (the file decoded as UTF-8, or the
`text` field of a JSONL record), so that ``article.text[chunk.start:chunk.end] == chunk.text`` always.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Section(StrEnum):
    BODY = "body"
    RELATED = "related"  # a teaser of another article shown on this page


@dataclass(frozen=True, slots=True)
class Segment:
    """A contiguous span of the source that keeps one label; chunks never cross its ends."""

    section: Section
    start: int
    end: int
    heading: str = ""  # the teaser's title for related segments


@dataclass(frozen=True, slots=True)
class Article:
    doc_id: str
    title: str
    date: str | None  # ISO yyyy-mm-dd, only when the page states it
    source: str  # the file (and record id for JSONL) the text came from
    text: str  # the whole source text; offsets refer to it
    segments: tuple[Segment, ...]
    url: str | None = None
    dropped: int = 0  # lines dropped as boilerplate (captions, repeats, navigation)
    fetched_at: str | None = None  # when a page fetched from the web was read (ISO, UTC)
    other_urls: tuple[str, ...] = ()  # where copies of this story were also published (not stored twice)

    def segment_text(self, segment: Segment) -> str:
        return self.text[segment.start : segment.end]


@dataclass(frozen=True, slots=True)
class Chunk:
    doc_id: str
    section: Section
    start: int
    end: int
    text: str
    heading: str = ""

    def __post_init__(self) -> None:
        if self.end - self.start != len(self.text):
            raise ValueError("chunk offsets do not match its text length")


@dataclass(frozen=True, slots=True)
class Hit:
    """A chunk retrieved for a question, with its fused score and why it was found."""

    chunk: Chunk
    score: float
    title: str
    date: str | None
    dense_score: float | None = None
    url: str | None = None  # where the article was published, when known
    dense_rank: int | None = None
    lexical_rank: int | None = None
    supported: bool = True  # the question's named entities appear in its article
    why: tuple[str, ...] = ()
    key: tuple[int, int] | None = None  # the sentence that answers, as offsets into chunk.text
    answers: bool = True  # its key sentence holds what is asked (else it only supports the first)


@dataclass(frozen=True, slots=True)
class AnswerSpan:
    """The short answer itself (a number, date, name or place), verifiable like a passage: ``text`` is
    the article's ``text[start:end]``."""

    doc_id: str
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class RemovedSentence:
    """A sentence the language model wrote that its cited passages did not support."""

    sentence: str
    reason: str


@dataclass(frozen=True, slots=True)
class Generation:
    """How a written answer came about (``generation.backend = "openai"``): the model, the sentences
    removed by the check, and whether the extractive answer was given instead (``error``: why the model
    could not be used, when it failed)."""

    model: str
    removed: tuple[RemovedSentence, ...] = ()
    fallback: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    question: str
    answerable: bool
    hits: tuple[Hit, ...]
    text: str = ""  # a short chat-style answer with [n] markers
    reason: str = ""  # why the service abstained, when it did
    search_query: str = ""  # the question as searched (history, aliases applied)
    warnings: tuple[str, ...] = field(default_factory=tuple)
    span: AnswerSpan | None = None  # for who / how many / when / where questions, when found
    generation: Generation | None = None  # set when a language model was asked to write the answer
