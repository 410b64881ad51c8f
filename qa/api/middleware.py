"""Pure ASGI middleware: API-key authentication of /v1 (full-access and read-only keys) and the request
body size limit."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa.api.errors import ApiError, error_response

PROTECTED_PREFIX = "/v1"
PROTECTED_PATHS = frozenset({"/metrics"})  # read routes outside /v1 that reveal how the service is used


def _protected(path: str) -> bool:
    return path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/") or path in PROTECTED_PATHS


def key_matches(presented: str, keys: Iterable[bytes]) -> bool:
    """Constant-time comparison against every configured key (no early exit on a match)."""
    candidate = presented.encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key)
    return matched


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


# POSTs that only read: asking is allowed with a read-only key.
READ_ONLY_POSTS = frozenset({"/v1/ask", "/v1/chat/completions"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# scope["state"][CLIENT_KEY]: a short digest of the valid API key the request presented (rate limits)
CLIENT_KEY = "qa.api_key_id"


def is_write(method: str, path: str) -> bool:
    """Does this /v1 request change articles (and so need a full-access key)?"""
    return method not in SAFE_METHODS and path not in READ_ONLY_POSTS


def key_id(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:16]


class ApiKeyMiddleware:
    """When keys are configured, every /v1 request needs ``Authorization: Bearer <key>``: a full-access
    key (``server.api_keys``) for anything, a read-only key (``server.read_keys``) for GETs, /v1/ask and
    /v1/chat/completions (403 on a write).

    It runs before the body is read or any route is called, so an unauthorised request changes nothing.
    """

    def __init__(self, app: ASGIApp, keys: Iterable[str], read_keys: Iterable[str] = ()) -> None:
        self.app = app
        self.keys = tuple(k.encode("utf-8") for k in keys if k)
        self.read_keys = tuple(k.encode("utf-8") for k in read_keys if k)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (self.keys or self.read_keys) or not _protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = bearer_token(Headers(scope=scope).get("authorization"))
        full = token is not None and key_matches(token, self.keys)
        read = token is not None and key_matches(token, self.read_keys)  # both lists, always
        if token is not None and (full or read):
            if not full and is_write(scope["method"], scope["path"]):
                message = (
                    "this API key is read-only (ask, chat, list and read articles): adding, replacing "
                    "or deleting articles needs a full-access key (server.api_keys)"
                )
                await error_response(403, "read_only_key", message)(scope, receive, send)
                return
            scope.setdefault("state", {})[CLIENT_KEY] = key_id(token)
            await self.app(scope, receive, send)
            return
        message = (
            "a valid API key is required: send the header 'Authorization: Bearer <key>'"
            if token is None
            else "the API key is not valid"
        )
        response = error_response(
            401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="qa"'}
        )
        await response(scope, receive, send)


class BodyTooLarge(ApiError):
    """Raised while the body is being read; an HTTPException so that FastAPI passes it through."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "payload_too_large", f"the request body is over the limit of {limit} bytes")


class BodyLimitMiddleware:
    """413 when the declared Content-Length, or the bytes actually received, exceed ``limit``."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await error_response(400, "bad_request", "the Content-Length header is not a number")(
                    scope, receive, send
                )
                return
            if length > self.limit:
                await BodyLimitMiddleware._reject(self.limit, scope, receive, send)
                return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await BodyLimitMiddleware._reject(self.limit, scope, receive, send)

    @staticmethod
    async def _reject(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        exc = BodyTooLarge(limit)
        response = error_response(413, exc.code, str(exc.detail), headers={"Connection": "close"})
        await response(scope, receive, send)
