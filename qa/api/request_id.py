"""A request id on every request: the client's ``X-Request-ID`` when it is a sane token, else a new one;
returned in the response's ``X-Request-ID`` and carried by every log line written while the request is
handled (:data:`qa.logs.REQUEST_ID`)."""

from __future__ import annotations

import logging
import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa.logs import REQUEST_ID

log = logging.getLogger(__name__)

HEADER = "X-Request-ID"
MAX_LENGTH = 128
# Letters, digits and - _ . : / + = (UUIDs, ULIDs, trace ids, base64): nothing that could forge a log line
_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_.:/+=]{0," + str(MAX_LENGTH - 1) + "}")
STATE_KEY = "request_id"  # also in scope["state"], for handlers that want it


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted(value: str | None) -> str | None:
    """The client's id if it is acceptable (1..128 characters of a safe set), else None."""
    if value is None:
        return None
    value = value.strip()
    return value if _VALID.fullmatch(value) else None


class RequestIdMiddleware:
    """Outermost middleware: every response, errors included, carries the request's id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = Headers(scope=scope).get(HEADER)
        request_id = accepted(presented) or new_request_id()
        scope.setdefault("state", {})[STATE_KEY] = request_id
        token = REQUEST_ID.set(request_id)
        if presented is not None and accepted(presented) is None:
            log.info("replaced an unusable %s header (%d characters) by a new id", HEADER, len(presented))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
