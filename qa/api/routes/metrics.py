"""GET /metrics: Prometheus text format — HTTP metrics from prometheus-fastapi-instrumentator and the
service's own (:mod:`qa.metrics`). Protected like the other read routes: when API keys are configured it
needs a key (a read-only one is enough), and it answers only to allowed Host names."""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_fastapi_instrumentator import Instrumentator

from qa import metrics
from qa.api.errors import responses

log = logging.getLogger(__name__)

PATH = "/metrics"
router = APIRouter(tags=["health"])


def instrument(app: FastAPI) -> None:
    """Count and time every request by route template (unknown paths are grouped as ``none``)."""
    Instrumentator(excluded_handlers=[PATH]).instrument(app)


@router.get(
    PATH,
    summary="Prometheus metrics",
    description="Requests by route and status, questions, abstentions by reason, retrieval and encoding "
    "time, index size, writes, feed polls. With `--workers N`, the sum over every worker.",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        **responses(401),  # when API keys are configured
    },
)
def get_metrics(request: Request) -> Response:
    engine = request.app.state.engine
    if request.app.state.readiness.ready:
        try:
            index = engine.index
            metrics.record_index_size(len(index.articles), len(index), len(index.segments))
        except Exception as exc:  # a scrape never fails for want of an index
            log.debug("index size not available: %s", exc)
    body, content_type = metrics.exposition()
    return Response(content=body, media_type=content_type)
