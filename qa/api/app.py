"""The FastAPI application: one shared Engine, thin routes, one JSON error shape, auth and size limits.

``create_app(settings)`` is what ``qa serve`` runs. Errors are always ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI, Security
from pydantic import BaseModel

from qa.api.deps import bearer_scheme
from qa.api.errors import install_error_handlers
from qa.api.headers import SecurityHeadersMiddleware
from qa.api.middleware import ApiKeyMiddleware, BodyLimitMiddleware
from qa.api.ratelimit import RateLimitMiddleware, build_limiter
from qa.api.request_id import RequestIdMiddleware
from qa.api.routes import ask, chat, documents, health
from qa.api.routes import metrics as metrics_route
from qa.api.schemas import EXTRA_SCHEMAS
from qa.api.security import HostPolicy, SameOriginMiddleware, TrustedHostMiddleware
from qa.api.startup import Readiness, lifespan
from qa.api.web import mount_web
from qa.config import Settings, load_settings
from qa.engine import Engine
from qa.errors import ConfigError
from qa.live.service import LiveIngestion

DESCRIPTION = """\
Question answering with verifiable citations over Chinese news articles.

Every answer cites passages by `[n]`; a passage's `text` is exactly `article.text[start:end]` of the
article `doc_id` (see `GET /v1/documents/{doc_id}`). When the articles do not answer a question the
service says so (`answerable: false`) instead of guessing.

**Errors** always have the shape `{"error": {"code": "...", "message": "..."}}` (validation errors add
`details`: one `{loc, msg, type}` per invalid field). Statuses: 400 malformed body (invalid JSON or
UTF-8) or a `Host` header this service does not answer to, 401 missing/wrong API key, 403 a read-only
key on a write or a cross-site write (see below), 404 unknown article or route, 413 body too large,
415 wrong content type, 422 invalid input, 429 rate limit reached (wait `Retry-After` seconds), 503
index not loaded yet, 500 unexpected (details only in the server log).

**Authentication**: when API keys are configured, every `/v1` route needs `Authorization: Bearer <key>`;
`/`, `/healthz` and `/readyz` stay open. A full-access key (`server.api_keys`) may do anything; a
read-only key (`server.read_keys`) may ask (`/v1/ask`, `/v1/chat/completions`), list and read
articles, and gets 403 `read_only_key` on `POST`/`DELETE /v1/documents`.

**Cross-site writes**: a `POST`/`PUT`/`PATCH`/`DELETE` whose `Origin` (or, lacking one, `Referer`) is
not this service's own origin nor listed in `server.allowed_origins` gets 403 `cross_origin_refused`;
requests with neither header (curl, server-side clients) are not affected.

**Rate limits** (when `rate_limit.enabled`): `/v1/ask`, `/v1/chat/completions` and the document writes
are limited per client (its API key, else its IP address); above the limit 429 `rate_limited` with a
`Retry-After` header.
"""

try:
    VERSION = version("zh-news-qa")
except PackageNotFoundError:  # pragma: no cover - running from a plain checkout
    VERSION = "0.0.0"

REF_TEMPLATE = "#/components/schemas/{model}"

TAGS = [
    {"name": "questions", "description": "Ask a question, get an answer with cited passages."},
    {"name": "chat (OpenAI-compatible)", "description": "The OpenAI chat completions API, with citations."},
    {"name": "documents", "description": "The articles: list, read, add or replace, delete."},
    {"name": "health", "description": "Liveness and readiness probes."},
    {"name": "web", "description": "The web chat page."},
]


def _telegram_router(engine: Engine, settings: Settings) -> Any:
    from qa.bot.ptb import require_telegram

    require_telegram("telegram.enabled = true")  # TelegramUnavailableError naming the extra to install
    try:
        module = importlib.import_module("qa.bot.telegram")
    except ModuleNotFoundError as exc:
        if exc.name not in {"qa.bot", "qa.bot.telegram"}:
            raise
        raise ConfigError(
            "telegram.enabled is true but the Telegram adapter qa.bot.telegram is missing"
        ) from exc
    return module.telegram_router(engine, settings)


def add_component_schemas(app: FastAPI, models: tuple[type[BaseModel], ...]) -> None:
    """Put models that no route names (e.g. the streamed chunk) into the OpenAPI components."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # cached by FastAPI; adding the models again is cheap and idempotent
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            definition = model.model_json_schema(ref_template=REF_TEMPLATE)
            for name, nested in definition.pop("$defs", {}).items():
                components.setdefault(name, nested)
            components[model.__name__] = definition
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The service. ``engine`` may be injected (tests); otherwise one is created and opened at start-up
    (index built on first use, synced with the corpus folder) while /healthz already answers."""
    shared = engine if engine is not None else Engine(settings)
    app = FastAPI(
        title="Chinese news QA",
        version=VERSION,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = shared
    app.state.readiness = Readiness()
    app.state.live = LiveIngestion(shared)  # pages by URL, and the [feeds] poller

    install_error_handlers(app)
    secured = [Security(bearer_scheme)] if settings.server.api_keys or settings.server.read_keys else []
    app.include_router(health.router)
    for module in (ask, chat, documents):
        app.include_router(module.router, dependencies=secured)
    if settings.metrics.enabled:
        app.include_router(metrics_route.router, dependencies=secured)
    if settings.telegram.enabled:
        app.include_router(_telegram_router(shared, settings))
    mount_web(app)
    add_component_schemas(app, EXTRA_SCHEMAS)

    # added last = outermost. A request meets: its id, the HTTP metrics, security headers (on every
    # response), the Host check, the Origin check of writes, authentication, the rate limit, then the
    # body size limit.
    server = settings.server
    app.add_middleware(BodyLimitMiddleware, limit=server.max_body_bytes)
    if settings.rate_limit.enabled:  # the limiter is built now: a bad storage stops start-up
        limiter = build_limiter(settings.rate_limit)
        app.add_middleware(RateLimitMiddleware, settings=settings.rate_limit, limiter=limiter)
    app.add_middleware(ApiKeyMiddleware, keys=server.api_keys, read_keys=server.read_keys)
    app.add_middleware(SameOriginMiddleware, allowed=server.allowed_origins)
    app.add_middleware(TrustedHostMiddleware, policy=HostPolicy.from_settings(server))
    app.add_middleware(SecurityHeadersMiddleware)
    if settings.metrics.enabled:  # counts every request, refused ones too
        metrics_route.instrument(app)
    app.add_middleware(RequestIdMiddleware)  # outermost: every response and log line carries the id
    return app


def app_from_config() -> FastAPI:
    """The app of one ``qa serve --workers N`` process: settings from ``QA_CONFIG`` and ``QA_*``."""
    from qa.logs import configure

    settings = load_settings()
    configure(settings.log.level, settings.log.format)
    return create_app(settings)
