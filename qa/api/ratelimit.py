"""Rate limits per client on the expensive and the state-changing routes, with the ``limits`` package.

A client is its API key when it presented a valid one (set by ApiKeyMiddleware, which runs first),
else its IP address (behind a proxy: the one uvicorn takes from X-Forwarded-For when the proxy is in
``--forwarded-allow-ips``, 127.0.0.1 by default). With the default ``memory://`` storage the counts live
in each server process: ``qa serve --workers N`` lets a client make N times the limit. A shared storage
(``redis://…``, ``memcached://…``) counts across processes and replicas.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import anyio.to_thread
from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import STRATEGIES, RateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from qa.api.errors import error_response
from qa.api.middleware import CLIENT_KEY
from qa.config import RateLimitSettings
from qa.errors import ConfigError

T = TypeVar("T")

ROUTE_CLASSES = ("ask", "chat", "documents_write")


def route_class(method: str, path: str) -> str | None:
    """Which limit a request counts against, or None for unlimited routes."""
    if method == "POST" and path == "/v1/ask":
        return "ask"
    if method == "POST" and path == "/v1/chat/completions":
        return "chat"
    if method not in ("GET", "HEAD", "OPTIONS") and (
        path == "/v1/documents" or path.startswith("/v1/documents/")
    ):
        return "documents_write"
    return None


def client_id(scope: Scope) -> str:
    key = scope.get("state", {}).get(CLIENT_KEY)
    if isinstance(key, str):
        return f"key:{key}"
    client = scope.get("client")
    return f"ip:{client[0]}" if client else "ip:unknown"


def build_limiter(settings: RateLimitSettings) -> RateLimiter:
    """The strategy over the configured storage. Raises ConfigError (e.g. a storage's package missing)."""
    try:
        storage = storage_from_string(settings.storage)
    except ConfigurationError as exc:
        raise ConfigError(f"rate_limit.storage {settings.storage!r}: {exc}") from exc
    assert isinstance(storage, Storage)
    limiter: RateLimiter = STRATEGIES[settings.strategy](storage)
    return limiter


class RateLimitMiddleware:
    """429 with Retry-After once a client has used up a route class's limit."""

    def __init__(self, app: ASGIApp, settings: RateLimitSettings, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter
        self.rules: dict[str, list[RateLimitItem]] = {
            name: parse_many(getattr(settings, name)) for name in ROUTE_CLASSES
        }
        # the in-process storage answers at once; a network storage must not block the event loop
        self.inline = isinstance(self.limiter.storage, MemoryStorage)

    async def _call(self, function: Callable[[], T]) -> T:
        return function() if self.inline else await anyio.to_thread.run_sync(function)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = route_class(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if name is None:
            await self.app(scope, receive, send)
            return
        who = client_id(scope)
        for item in self.rules[name]:
            if await self._call(partial(self.limiter.hit, item, name, who)):
                continue
            stats = await self._call(partial(self.limiter.get_window_stats, item, name, who))
            retry = max(1, math.ceil(stats.reset_time - time.time()))
            message = f"too many requests: at most {item} for this client; retry in {retry} s"
            headers = {"Retry-After": str(retry)}
            await error_response(429, "rate_limited", message, headers=headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)
