"""GET /healthz (the process is alive) and GET /readyz (the index is loaded and questions can be asked)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request

from qa.api.errors import error_response
from qa.api.schemas import ErrorResponse, Health, Ready
from qa.api.startup import Readiness
from qa.errors import public_message

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness", description="200 while the process runs.")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Ready,
    response_model_exclude_unset=True,  # `feeds` only when feeds are configured
    summary="Readiness",
    description="200 once the index is loaded (and synced with the corpus folder at start-up), 503 before.",
    responses={
        503: {
            "model": ErrorResponse,
            "description": "Still loading, or start-up failed",
            "content": {
                "application/json": {
                    "example": {"error": {"code": "not_ready", "message": "the index is still loading"}}
                }
            },
        }
    },
)
async def readyz(request: Request) -> Any:
    readiness: Readiness = request.app.state.readiness
    if readiness.error is not None:
        return error_response(503, "startup_failed", f"start-up failed: {readiness.error}")
    if not readiness.ready:
        return error_response(503, "not_ready", "the index is still loading")
    engine = request.app.state.engine
    try:
        index = engine.index
        model = engine.encoder.name
    except Exception as exc:  # the snapshot vanished: report, never raise from a probe
        log.warning("not ready: %s", exc)
        return error_response(503, "not_ready", public_message(exc))
    live = getattr(request.app.state, "live", None)
    feeds = live.status() if live is not None else None
    extra: dict[str, Any] = {"feeds": feeds} if feeds is not None else {}
    return Ready(status="ready", articles=len(index.articles), passages=len(index), model=model, **extra)
