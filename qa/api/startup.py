"""Start-up: the engine opens (builds or syncs its index) in a worker thread while the server already
answers /healthz; /readyz turns 200 when it is done."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio.to_thread
from fastapi import FastAPI

from qa.engine import Engine
from qa.errors import IndexStoreError, public_message
from qa.live.service import LiveIngestion
from qa.retrieval.dictionary import shared as shared_dictionary

log = logging.getLogger(__name__)


@dataclass
class Readiness:
    ready: bool = False
    error: str | None = None


def has_index(engine: Engine) -> bool:
    try:
        return engine.index is not None
    except IndexStoreError:
        return False


async def open_engine(engine: Engine, readiness: Readiness, live: LiveIngestion | None = None) -> None:
    try:
        await anyio.to_thread.run_sync(lambda: engine.open(sync=True), abandon_on_cancel=True)
    except Exception as exc:  # reported by /readyz and the log; the process stays up for the probes
        log.exception("the engine could not be opened")
        readiness.error = public_message(exc)
        return
    readiness.ready = True
    index = engine.index
    log.info("ready: %d articles, %d passages", len(index.articles), len(index))
    if live is not None:
        live.start()  # the feeds are polled once the index is open
    # jieba's dictionary and tagger (about 1 s): every question needs them, so a worker's first question,
    # and the questions queued behind it, would wait for them (0.86 s at 75k passages). Loaded after
    # /readyz turns 200, so that start-up does not wait; a question that comes sooner waits less.
    await anyio.to_thread.run_sync(engine.tokenizer.warm, abandon_on_cancel=True)
    if engine.settings.server.warm_dictionary:
        # 1-4 s of reading: a worker's first English question, and every question queued behind it in the
        # question slots, would wait for it (p99 2.8 s under load). One that comes sooner waits less.
        await anyio.to_thread.run_sync(shared_dictionary().warm, abandon_on_cancel=True)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine: Engine = app.state.engine
    readiness: Readiness = app.state.readiness
    live: LiveIngestion | None = getattr(app.state, "live", None)
    task: asyncio.Task[None] | None = None
    if has_index(engine):  # an engine injected already open (tests, embedding)
        readiness.ready = True
        if live is not None:
            live.start()
    else:
        task = asyncio.create_task(open_engine(engine, readiness, live), name="qa-open-engine")
    try:
        yield
    finally:
        if live is not None:
            await anyio.to_thread.run_sync(live.stop)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
