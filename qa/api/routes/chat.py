"""POST /v1/chat/completions: the OpenAI chat API, so that OpenAI clients and chat UIs work unchanged."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi import APIRouter, Depends
from sse_starlette import EventSourceResponse, ServerSentEvent

from qa.api.answering import ask_json, written_stream
from qa.api.deps import EngineDep, require_json
from qa.api.errors import ApiError, responses
from qa.api.schemas import (
    SSE_EVENT_SCHEMA,
    ChatCompletion,
    ChatCompletionRequest,
    ModelCard,
    ModelList,
)

router = APIRouter(tags=["chat (OpenAI-compatible)"])

MODEL_ID = "zh-news-qa"
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
_WORD = re.compile(r"[^\s\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]+")


def rough_tokens(text: str) -> int:
    """A rough token count: one per CJK character, one per other word."""
    return len(_CJK.findall(text)) + len(_WORD.findall(text))


def _question_and_history(request: ChatCompletionRequest) -> tuple[str, list[str]]:
    users = [m.text() for m in request.messages if m.role == "user"]
    if not users:
        raise ApiError(422, "invalid_request", "messages: there is no user message to answer")
    return users[-1], users[:-1]


def _pieces(text: str) -> Iterator[str]:
    """The answer in streamed pieces: one line at a time (each cited sentence is one line)."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        yield line + ("\n" if i < len(lines) - 1 else "")


def _chunk(cid: str, created: int, model: str, choices: list[dict[str, Any]], **extra: Any) -> str:
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": choices,
        **extra,
    }
    return json.dumps(body, ensure_ascii=False)


async def _events(
    cid: str,
    created: int,
    model: str,
    pieces: AsyncIterator[str],
    final: Callable[[], dict[str, Any]],
    usage: Callable[[dict[str, Any]], dict[str, int] | None],
) -> AsyncIterator[ServerSentEvent]:
    """The stream: the role, the answer's ``pieces``, the stop chunk, then the ``final()`` answer's
    citations (and generation report, and ``usage(answer)`` when asked for)."""

    def delta(content: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}]

    yield ServerSentEvent(data=_chunk(cid, created, model, delta({"role": "assistant", "content": ""})))
    async for piece in pieces:
        if piece:
            yield ServerSentEvent(data=_chunk(cid, created, model, delta({"content": piece})))
    answer = final()
    yield ServerSentEvent(data=_chunk(cid, created, model, delta({}, "stop")))
    extra: dict[str, Any] = {"citations": answer["passages"], "usage": usage(answer)}
    if answer.get("generation") is not None:
        extra["generation"] = answer["generation"]
    yield ServerSentEvent(data=_chunk(cid, created, model, [], **extra))
    yield ServerSentEvent(data="[DONE]")


async def _lines(text: str) -> AsyncIterator[str]:
    for piece in _pieces(text):
        yield piece


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    summary="Chat completion (OpenAI-compatible) with citations",
    description=(
        "The OpenAI chat completions API: the last user message is the question, earlier user messages "
        "are history; other OpenAI parameters are accepted and ignored. The assistant message is the "
        "chat-style answer with [n] markers and the cited passages travel in the extra top-level field "
        "`citations`.\n\n"
        "With `stream: true` the response is `text/event-stream`: `chat.completion.chunk` events (the "
        'role first, then content deltas, then a chunk with `finish_reason: "stop"`), then one chunk '
        "with empty `choices` carrying `citations` (and `usage` when `stream_options.include_usage`), "
        "then `data: [DONE]`."
    ),
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "schema": SSE_EVENT_SCHEMA,
                    "example": 'data: {"object": "chat.completion.chunk", "choices": [{"index": 0, '
                    '"delta": {"content": "胡志明市与中国8个地方保持着友好合作关系。 [1]"}}]}\n\n'
                    "data: [DONE]\n\n",
                }
            },
            "description": "A chat.completion object, or server-sent events when `stream` is true.",
        },
        **responses(400, 401, 403, 413, 415, 422, 429, 503),
    },
    dependencies=[Depends(require_json)],
)
async def chat_completions(body: ChatCompletionRequest, engine: EngineDep) -> Any:
    question, history = _question_and_history(body)
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    model = body.model or MODEL_ID
    prompt = rough_tokens("\n".join(m.text() for m in body.messages))

    def usage(answer: dict[str, Any]) -> dict[str, int]:
        completion = rough_tokens(answer["answer"])
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        if engine.writer is not None:  # a language model writes it: checked sentences as they complete
            pieces, final = await written_stream(engine, question, history=history, top_k=body.top_k)
        else:
            answer = await ask_json(engine, question, history=history, top_k=body.top_k)
            pieces, final = _lines(answer["answer"]), lambda: answer
        events = _events(
            cid, created, model, pieces, final, lambda answer: usage(answer) if include_usage else None
        )
        return EventSourceResponse(events, ping=15, headers={"Cache-Control": "no-store"})
    answer = await ask_json(engine, question, history=history, top_k=body.top_k)
    reply: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer["answer"]},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage(answer),
        "citations": answer["passages"],
    }
    if answer.get("generation") is not None:
        reply["generation"] = answer["generation"]
    return reply


@router.get(
    "/v1/models",
    response_model=ModelList,
    summary="List the models (OpenAI-compatible)",
    description="The one model this service answers with, for OpenAI clients that list models first.",
    responses=responses(401),
)
async def list_models() -> ModelList:
    return ModelList(data=[ModelCard(id=MODEL_ID, created=0)])
