"""Calling the engine for a question off the event loop, and the answer as JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from qa import engine as engine_module
from qa.api import schemas
from qa.engine import Engine
from qa.serialize import answer_to_json


def engine_filters(filters: schemas.Filters | None) -> engine_module.Filters | None:
    if filters is None:
        return None
    if filters.date_from is None and filters.date_to is None and filters.doc_ids is None:
        return None
    return engine_module.Filters(
        date_from=filters.date_from,
        date_to=filters.date_to,
        doc_ids=tuple(filters.doc_ids) if filters.doc_ids is not None else None,
    )


async def ask_json(
    engine: Engine,
    question: str,
    *,
    history: Sequence[str] = (),
    top_k: int | None = None,
    filters: schemas.Filters | None = None,
) -> dict[str, Any]:
    """The answer as `qa.serialize.answer_to_json`; library errors propagate to the error handlers."""
    engine.check_question(question, top_k)  # cheap: reject bad input before taking a worker thread
    answer = await run_in_threadpool(
        engine.ask, question, history=list(history), top_k=top_k, filters=engine_filters(filters)
    )
    return answer_to_json(answer)


async def written_stream(
    engine: Engine, question: str, *, history: Sequence[str] = (), top_k: int | None = None
) -> tuple[AsyncIterator[str], Callable[[], dict[str, Any]]]:
    """The answer as the language model writes it: its checked sentences as they complete (or the
    extractive text, when it falls back or the service abstains), and the whole answer's JSON once
    they have all been read."""
    engine.check_question(question, top_k)
    answer = await run_in_threadpool(engine.ask, question, history=list(history), top_k=top_k, write=False)
    stream = engine.write_stream(answer, history)
    if stream is None:  # an abstention: the model is not asked

        async def extractive() -> AsyncIterator[str]:
            yield answer.text

        return extractive(), lambda: answer_to_json(answer)

    def final() -> dict[str, Any]:
        assert stream.answer is not None, "the stream was not read to its end"
        return answer_to_json(stream.answer)

    return iterate_in_threadpool(iter(stream)), final
