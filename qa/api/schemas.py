"""Request and response models of the HTTP API: what the OpenAPI schema shows, with examples."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

ISO_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
# Documented only (the routes check doc_ids themselves, with the error code `invalid_input`).
DOC_ID_SCHEMA: dict[str, Any] = {"pattern": r"^\w[\w.\-]{0,199}$", "not": {"pattern": r"\.\."}}
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _unicode_text(value: str) -> str:
    """JSON can carry lone surrogates (``"\\ud800"``); they are not text and cannot be stored or encoded."""
    if _SURROGATE.search(value):
        raise ValueError("must be valid Unicode text (it contains a lone surrogate)")
    return value


Text = Annotated[str, AfterValidator(_unicode_text)]

# -- errors ----------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable machine-readable code, e.g. `invalid_request`, `not_found`.")
    message: str = Field(description="A human-readable explanation.")
    details: list[dict[str, Any]] | None = Field(
        default=None,
        description="For `invalid_request`: one item per invalid field (`loc`, `msg`, `type`).",
    )


class ErrorResponse(BaseModel):
    """Every error of the API has this shape, whatever its status code."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"error": {"code": "invalid_question", "message": "the question is empty"}}]
        }
    )

    error: ErrorDetail


# -- answers ---------------------------------------------------------------------------------------


class Highlight(BaseModel):
    start: int = Field(description="Start of the key sentence, as an offset into the passage `text`.")
    end: int = Field(description="End (exclusive) of the key sentence within the passage `text`.")


class Passage(BaseModel):
    """A cited passage; `text == article.text[start:end]` of the article `doc_id`."""

    rank: int = Field(description="The citation number: `[rank]` in the answer text.", examples=[1])
    text: str = Field(description="The passage, verbatim from the article.")
    score: float = Field(description="Fused retrieval score (reciprocal-rank fusion of dense and BM25).")
    doc_id: str = Field(description="The article the passage comes from.", examples=["000_a2194725df4ab5f6"])
    title: str = Field(description="The article's title.")
    date: str | None = Field(description="The article's date (YYYY-MM-DD), when the page states it.")
    url: str | None = Field(default=None, description="Where the article was published, when known.")
    section: Literal["body", "related"] = Field(
        description="`body` for the article itself, `related` for a teaser of another article on the page."
    )
    heading: str | None = Field(description="The teaser's title, for `related` passages.")
    start: int = Field(description="Start offset (code points) of the passage in the article text.")
    end: int = Field(description="End offset (exclusive) of the passage in the article text.")
    highlight: Highlight = Field(description="The sentence that best answers the question.")
    dense_score: float | None = Field(description="Cosine similarity of question and passage.")
    why: list[str] = Field(description="Why the passage was retrieved (ranks in each list, checks).")


class AnswerSpanOut(BaseModel):
    """The short answer itself; `text == article.text[start:end]` of the article `doc_id`, like a passage."""

    text: str = Field(description="The answer as the article writes it.", examples=["29个"])
    doc_id: str = Field(description="The article it comes from (the first passage's).")
    start: int = Field(description="Start offset (code points) in the article text.")
    end: int = Field(description="End offset (exclusive) in the article text.")


class RemovedSentenceOut(BaseModel):
    sentence: str = Field(description="A sentence the language model wrote, as it wrote it.")
    reason: str = Field(
        description="Why it was removed: no marker, a marker naming no passage, or a number, name or "
        "quoted word its cited passages do not hold.",
        examples=["number 9.9 is not in [1]"],
    )


class GenerationOut(BaseModel):
    """How a written answer came about, when `generation.backend = "openai"` (null otherwise)."""

    model: str = Field(description="The language model that wrote the answer.")
    removed: list[RemovedSentenceOut] = Field(
        description="Sentences of the reply its cited passages did not support; never shown."
    )
    fallback: bool = Field(
        description="True when `answer` is the extractive answer: no sentence was supported, or the "
        "model's server failed before one was."
    )
    error: str | None = Field(
        default=None,
        description="When the server failed: `timeout`, `connection`, `status_<code>` or `malformed`.",
    )


class HistoryTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant", "system"] = Field(description="Who said it; only user turns are used.")
    content: Text = Field(description="What was said.", examples=["胡志明市与中国哪些城市有合作？"])


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date_from: str | None = Field(
        default=None,
        description="Only articles dated on or after this day (YYYY-MM-DD). Undated articles are excluded.",
        examples=["2025-01-01"],
    )
    date_to: str | None = Field(
        default=None,
        description="Only articles dated on or before this day (YYYY-MM-DD). Undated articles are excluded.",
        examples=["2025-12-31"],
    )
    doc_ids: list[Text] | None = Field(
        default=None,
        max_length=10_000,
        description="Only these articles. Unknown ids simply match nothing.",
        examples=[["000_a2194725df4ab5f6"]],
    )

    @field_validator("date_from", "date_to")
    @classmethod
    def _iso_date(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            if len(value) != 10:
                raise ValueError(value)
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError(f"must be a date written YYYY-MM-DD, got {value!r}") from None

    @model_validator(mode="after")
    def _ordered(self) -> Filters:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(f"date_from {self.date_from} is after date_to {self.date_to}")
        return self


class AskRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"question": "胡志明市与中国多少个城市建立了友好合作关系？"},
                {
                    "question": "那贸易额呢？",
                    "top_k": 3,
                    "history": [{"role": "user", "content": "胡志明市与中国的合作情况如何？"}],
                    "filters": {"date_from": "2025-01-01", "date_to": "2025-12-31"},
                },
            ]
        },
    )

    question: Text = Field(
        description="The question, in Chinese (not empty; at most `server.max_question_chars` characters).",
        examples=["胡志明市与中国多少个城市建立了友好合作关系？"],
    )
    top_k: int | None = Field(
        default=None,
        strict=True,
        description="How many passages to cite: 1 to `server.max_top_k` (default `retrieval.top_k`).",
        examples=[5],
    )
    history: list[HistoryTurn] = Field(
        default_factory=list,
        max_length=1000,
        description="Earlier turns of the conversation; user turns help resolve follow-up questions.",
    )
    filters: Filters | None = Field(default=None, description="Restrict the search to some articles.")


EXAMPLE_ANSWER = "胡志明市与中国8个地方保持着友好合作关系。 [1]"
EXAMPLE_PASSAGE: dict[str, Any] = {
    "rank": 1,
    "text": "胡志明市与中国8个地方保持着友好合作关系。",
    "score": 1.4213,
    "doc_id": "000_a2194725df4ab5f6",
    "title": "胡志明市将努力巩固和发展与中国8个友好合作城市的友好关系",
    "date": "2025-01-21",
    "section": "body",
    "heading": None,
    "start": 562,
    "end": 583,
    "highlight": {"start": 0, "end": 21},
    "dense_score": 0.9128,
    "why": ["dense #1", "bm25 #2", "sentence coverage 0.47", "holds a number", "cosine 0.913"],
}


class AskResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "question": "胡志明市与中国多少个城市建立了友好合作关系？",
                    "answerable": True,
                    "answer": EXAMPLE_ANSWER,
                    "reason": None,
                    "passages": [EXAMPLE_PASSAGE],
                }
            ]
        }
    )

    question: str = Field(description="The question as asked.")
    answerable: bool = Field(description="False when the articles do not answer it (the service abstains).")
    answer: str = Field(
        description="A short chat-style answer whose sentences end with [n] citation markers."
    )
    reason: str | None = Field(description="Why the service abstained, when it did.")
    answer_span: AnswerSpanOut | None = Field(
        default=None,
        description="For who / how many / when / where questions: the answer itself, when the first passage "
        "holds one of the asked kind right beside the words of what is asked.",
    )
    passages: list[Passage] = Field(
        description="The cited passages, `[n]` ↔ `rank` n; empty when abstaining."
    )
    generation: GenerationOut | None = Field(
        default=None, description="Written answers only: the model, what was removed, whether it fell back."
    )


# -- OpenAI-compatible chat ------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="`text` parts are read; other parts (images…) are ignored.")
    text: Text | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Text | list[ContentPart] | None = Field(default=None, description="Text, or a list of parts.")

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if self.content is None:
            return ""
        return "".join(part.text or "" for part in self.content if part.type == "text")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = Field(default=False, strict=True)


class ChatCompletionRequest(BaseModel):
    """The OpenAI request; other OpenAI parameters (temperature, max_tokens…) are accepted and ignored."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "model": "zh-news-qa",
                    "messages": [
                        {"role": "user", "content": "胡志明市与中国的合作情况如何？"},
                        {"role": "assistant", "content": "……"},
                        {"role": "user", "content": "中国企业在胡志明市有多少个有效投资项目？"},
                    ],
                    "stream": False,
                }
            ]
        },
    )

    model: Text = Field(default="zh-news-qa", description="Echoed back; there is one model.")
    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=1000,
        description="The conversation; the last user message is the question, earlier ones are history.",
    )
    stream: bool = Field(
        default=False, strict=True, description="Send `chat.completion.chunk` server-sent events."
    )
    stream_options: StreamOptions | None = Field(default=None, description="`include_usage` is honoured.")
    top_k: int | None = Field(
        default=None, strict=True, description="Extension: how many passages to cite (like /v1/ask)."
    )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str = Field(description="The chat-style answer with [n] markers.")


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Rough count: CJK characters plus other words.")
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "chatcmpl-5f0c7a0e9b7d4c0f8f3f2a1b6c9d8e7f",
                    "object": "chat.completion",
                    "created": 1737450000,
                    "model": "zh-news-qa",
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": EXAMPLE_ANSWER,
                            },
                            "finish_reason": "stop",
                            "logprobs": None,
                        }
                    ],
                    "usage": {"prompt_tokens": 22, "completion_tokens": 60, "total_tokens": 82},
                    "citations": [EXAMPLE_PASSAGE],
                }
            ]
        }
    )

    id: str = Field(examples=["chatcmpl-5f0c7a0e9b7d4c0f8f3f2a1b6c9d8e7f"])
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(description="Unix time in seconds.")
    model: str
    choices: list[Choice]
    usage: Usage
    citations: list[Passage] = Field(description="Extension: the cited passages, `[n]` ↔ `rank` n.")
    generation: GenerationOut | None = Field(
        default=None, description="Extension, for written answers: the model, what was removed, fallback."
    )


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = Field(default=None, description="In the first chunk only.")
    content: str | None = Field(default=None, description="The next piece of the answer.")


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    logprobs: None = None
    finish_reason: Literal["stop"] | None = Field(description='`"stop"` in the last chunk with choices.')


class ChatCompletionChunk(BaseModel):
    """One streamed event's JSON (`data:`); the last one before `[DONE]` has no choices and the citations."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(description="Unix time in seconds.")
    model: str
    system_fingerprint: None = None
    choices: list[ChunkChoice]
    citations: list[Passage] | None = Field(
        default=None, description="Extension, in the last chunk only: the cited passages."
    )
    usage: Usage | None = Field(
        default=None, description="In the last chunk, when `stream_options.include_usage` is true."
    )
    generation: GenerationOut | None = Field(
        default=None, description="Extension, in the last chunk of a written answer: what was removed."
    )


SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One server-sent event: a `chat.completion.chunk` as JSON, or `[DONE]` at the end.",
    "required": ["data"],
    "properties": {
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
        "data": {
            "anyOf": [
                {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": "#/components/schemas/ChatCompletionChunk"},
                },
                {"const": "[DONE]"},
            ]
        },
    },
}

# Models the OpenAPI schema needs that no route names (FastAPI only collects those that routes name).
EXTRA_SCHEMAS: tuple[type[BaseModel], ...] = (ChatCompletionChunk,)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "zh-news-qa"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- documents -------------------------------------------------------------------------------------


class DocumentIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "doc_id": "hcmc-shanghai-2025",
                    "title": "胡志明市与上海市加强合作",
                    "date": "2025-03-01",
                    "text": "3月1日,胡志明市与上海市举行会谈,双方同意加强经贸合作。",
                    "url": "https://example.com/news/1",
                }
            ]
        },
    )

    doc_id: Text = Field(
        min_length=1,
        max_length=200,
        description="1-200 letters, digits, `_`, `-` or `.`, not starting with a dot; replaces an article with the same id.",
        examples=["hcmc-shanghai-2025"],
        json_schema_extra=DOC_ID_SCHEMA,
    )
    text: Text = Field(
        min_length=1,
        description="The article: a news page as plain text (title on the first line when no `title` is given).",
    )
    title: Text | None = Field(default=None, description="The title, when not the first line of `text`.")
    date: str | None = Field(default=None, pattern=ISO_DATE_PATTERN, description="YYYY-MM-DD.")
    url: Text | None = Field(default=None, max_length=2000, description="Where the article was published.")


class SegmentOut(BaseModel):
    section: Literal["body", "related"]
    start: int = Field(description="Start offset in the article text.")
    end: int = Field(description="End offset (exclusive) in the article text.")
    heading: str | None = Field(description="The teaser's title, for `related` segments.")


_SUMMARY_EXAMPLE: dict[str, Any] = {
    "doc_id": "000_a2194725df4ab5f6",
    "title": "胡志明市将努力巩固和发展与中国8个友好合作城市的友好关系",
    "date": "2025-01-21",
    "url": None,
    "source": "000_a2194725df4ab5f6.txt",
    "passages": 18,
    "sections": {"body": 7, "related": 11},
}


class DocumentSummary(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_SUMMARY_EXAMPLE]})

    doc_id: str = Field(examples=["000_a2194725df4ab5f6"])
    title: str = Field(examples=["胡志明市将努力巩固和发展与中国8个友好合作城市的友好关系"])
    date: str | None = Field(description="YYYY-MM-DD, when the page states it.", examples=["2025-01-21"])
    url: str | None = None
    source: str = Field(description="The corpus file it is stored in (name only).")
    passages: int = Field(description="How many passages of it are indexed.")
    sections: dict[str, int] = Field(description="Indexed passages per section (`body`, `related`).")
    fetched_at: str | None = Field(
        default=None, description="When a page fetched from the web was read (UTC)."
    )
    other_urls: list[str] = Field(
        default_factory=list, description="Other pages that published this story (stored once, here)."
    )


class DocumentCreated(DocumentSummary):
    model_config = ConfigDict(json_schema_extra={"examples": [{**_SUMMARY_EXAMPLE, "replaced": False}]})

    replaced: bool = Field(description="True when an article with this doc_id was replaced.")
    outcome: Literal["added", "updated", "unchanged", "duplicate"] | None = Field(
        default=None,
        description=(
            'For `{"url"}`: `duplicate` when the page repeats a stored story (this is the stored '
            "article, now listing the URL in `other_urls`), `unchanged` when it was stored as it is."
        ),
    )


class DocumentUrlIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"url": "https://example.com/news/1"}]}
    )

    url: Text = Field(
        min_length=1, max_length=2000, description="An article page (http/https) to fetch and add."
    )


class DocumentDetail(DocumentSummary):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_SUMMARY_EXAMPLE,
                    "text": "胡志明市将努力巩固和发展与中国8个友好合作城市的友好关系\n\n15:44 | 21/01/2025\n\n1月20日,胡志明市人民委员会举行纪念越中建交75周年仪式。",
                    "segments": [{"section": "body", "start": 49, "end": 79, "heading": None}],
                }
            ]
        }
    )

    text: str = Field(description="The whole source text; passage offsets refer to it.")
    segments: list[SegmentOut] = Field(description="Labelled spans of `text` that were indexed.")


class DocumentPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_SUMMARY_EXAMPLE], "total": 5, "offset": 0, "limit": 50}]}
    )

    items: list[DocumentSummary]
    total: int = Field(description="How many articles there are in all.")
    offset: int
    limit: int


# -- health ----------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class FeedStatus(BaseModel):
    url: str
    ok: bool = Field(description="The last poll succeeded.")
    last_poll: str | None
    last_success: str | None
    last_error: str | None = Field(description="Why the last poll failed.")
    failures: int = Field(description="Failed polls in a row (the feed is retried with back-off).")
    next_poll: str | None
    seen: int = Field(description="Items seen so far.")
    added: int = Field(description="Articles added from the feed so far.")


class Ready(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "ready", "articles": 5, "passages": 81, "model": "multilingual-e5-small"}]
        }
    )

    status: Literal["ready"] = "ready"
    articles: int = Field(description="Articles in the loaded index.")
    passages: int = Field(description="Passages in the loaded index.")
    model: str = Field(description="The embedding model.", examples=["multilingual-e5-small"])
    feeds: list[FeedStatus] | None = Field(
        default=None, description="Each configured feed's last poll (absent when no feed is configured)."
    )
