"""Dependencies shared by the routes: the engine, the settings, the API-key scheme, content types."""

from __future__ import annotations

import email.message
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from qa.api.errors import ApiError
from qa.config import Settings
from qa.engine import Engine

# Only documents the scheme in OpenAPI; qa.api.middleware.ApiKeyMiddleware enforces it.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description=(
        "`Authorization: Bearer <key>`, needed on /v1 routes when `server.api_keys` or `server.read_keys` "
        "lists keys. A read-only key (`server.read_keys`) may ask, chat, list and read articles; adding, "
        "replacing or deleting articles needs a full-access key (`server.api_keys`), else 403."
    ),
)


# The dependencies are async: FastAPI runs a plain ``def`` dependency in the thread pool, two thread
# hops per question queued behind the pipeline's threads, for what is an attribute read.
async def get_engine(request: Request) -> Engine:
    engine = request.app.state.engine
    assert isinstance(engine, Engine)
    return engine


async def get_settings(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def media_type(request: Request) -> str:
    """The request's media type, lower case, without parameters ("" when there is none)."""
    value = request.headers.get("content-type")
    if not value:
        return ""
    message = email.message.Message()
    message["content-type"] = value
    return message.get_content_type().lower()


def is_json(media: str) -> bool:
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def require_json(request: Request) -> None:
    """415 unless the body is declared as JSON (FastAPI would otherwise not parse it)."""
    if not is_json(media_type(request)):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as JSON with 'Content-Type: application/json', got {request.headers.get('content-type')!r}",
        )
