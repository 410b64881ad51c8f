"""POST /v1/ask: a question → an answer with cited passages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from qa.api.answering import ask_json
from qa.api.deps import EngineDep, require_json
from qa.api.errors import responses
from qa.api.schemas import AskRequest, AskResponse
from qa.api.written import ask_event_stream, wants_events

router = APIRouter(tags=["questions"])


@router.post(
    "/v1/ask",
    response_model=AskResponse,
    summary="Answer a question with cited passages",
    description=(
        "Searches the articles for the question and answers with the key sentences of the best passages, "
        "each followed by its [n] marker; `passages[n-1]` is the cited text with its offsets in the "
        "article. When the articles do not answer the question, `answerable` is false, `reason` says why "
        "and no passage is cited. Earlier *user* turns of `history` help resolve follow-up questions.\n\n"
        'When a language model writes the answer (`generation.backend = "openai"`) and the request '
        "sends `Accept: text/event-stream`, the answer streams as server-sent events: `start` (the "
        "passages), one `delta` `{text}` per checked sentence, then `answer` (this response). Otherwise, "
        "and always with the extractive backend, the response is JSON."
    ),
    responses=responses(400, 401, 403, 413, 415, 422, 429, 503),
    dependencies=[Depends(require_json)],
)
async def ask(body: AskRequest, engine: EngineDep, request: Request) -> Any:
    history = [turn.content for turn in body.history if turn.role == "user"]
    if engine.writer is not None and wants_events(request):
        return ask_event_stream(
            engine, body.question, history=history, top_k=body.top_k, filters=body.filters
        )
    return await ask_json(engine, body.question, history=history, top_k=body.top_k, filters=body.filters)
