"""POST /v1/ask as server-sent events when a language model writes the answer (the web page reads them)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from qa.api import schemas
from qa.api.answering import engine_filters
from qa.engine import Engine
from qa.serialize import answer_to_json


def wants_events(request: Request) -> bool:
    """The client accepts a stream of events (the web page sends ``Accept: text/event-stream, …``)."""
    return "text/event-stream" in request.headers.get("accept", "")


async def ask_events(
    engine: Engine,
    question: str,
    *,
    history: Sequence[str] = (),
    top_k: int | None = None,
    filters: schemas.Filters | None = None,
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """POST /v1/ask as server-sent events, for a written answer: ``start`` (the passages, before the
    model writes), one ``delta`` per checked sentence (``{"text": …}``), then ``answer`` (the whole
    response, as without streaming). An abstention is one ``answer`` event; the model is not asked."""
    engine.check_question(question, top_k)
    answer = await run_in_threadpool(
        engine.ask,
        question,
        history=list(history),
        top_k=top_k,
        filters=engine_filters(filters),
        write=False,
    )
    stream = engine.write_stream(answer, history)
    if stream is None:
        yield "answer", answer_to_json(answer)
        return
    start = answer_to_json(answer)
    yield "start", {k: start[k] for k in ("question", "answerable", "answer_span", "passages")}
    async for piece in iterate_in_threadpool(iter(stream)):
        yield "delta", {"text": piece}
    assert stream.answer is not None
    yield "answer", answer_to_json(stream.answer)


def ask_event_stream(
    engine: Engine,
    question: str,
    *,
    history: Sequence[str],
    top_k: int | None,
    filters: schemas.Filters | None,
) -> EventSourceResponse:
    engine.check_question(question, top_k)  # bad input is a JSON error, before the stream starts

    async def events() -> AsyncIterator[ServerSentEvent]:
        async for name, data in ask_events(engine, question, history=history, top_k=top_k, filters=filters):
            yield ServerSentEvent(event=name, data=json.dumps(data, ensure_ascii=False))

    return EventSourceResponse(events(), ping=15, headers={"Cache-Control": "no-store"})
