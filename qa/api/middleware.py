"""Pure ASGI middleware: API-key authentication of /v1 and the request body size limit."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa.api.errors import ApiError, error_response

PROTECTED_PREFIX = "/v1"


def _protected(path: str) -> bool:
    return path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/")


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


class ApiKeyMiddleware:
    """When keys are configured, every /v1 request needs ``Authorization: Bearer <key>``.

    It runs before the body is read or any route is called, so an unauthorised request changes nothing.
    """

    def __init__(self, app: ASGIApp, keys: Iterable[str]) -> None:
        self.app = app
        self.keys = tuple(k.encode("utf-8") for k in keys if k)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or not _protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = bearer_token(Headers(scope=scope).get("authorization"))
        if token is not None and key_matches(token, self.keys):
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
