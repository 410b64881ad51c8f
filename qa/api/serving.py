"""How ``qa serve`` runs uvicorn: keep-alive timeout, connection limit, and a deadline for a request's head.

uvicorn (0.54, both its httptools and h11 protocols) arms no timer until a response has been sent: its
``timeout_keep_alive`` only covers the idle time *between* requests, and any byte received cancels it. A
connection that sends half a request line or half its headers and then stalls is kept open for ever, so
a few hundred such sockets (slowloris) pile up until the process runs out of file descriptors; with
``limit_concurrency`` set they would even make uvicorn answer real clients 503. The protocols here add a
deadline: from the moment a connection opens, or a new request on it starts, the client has
``timeout_headers`` seconds to complete the request line and headers, or the connection is closed.

uvicorn takes the protocol as a class or as an import string; worker processes (``--workers N``) are
spawned and import it by name, so the deadline is part of the name (``HeadDeadline_10000ms``) and this
module makes the class on first access.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import re
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from qa.config import Settings

log = logging.getLogger(__name__)

_NAME = re.compile(r"HeadDeadline_(\d+)ms")


class HeadDeadline:
    """A timer that closes a connection unless :meth:`stop` is called before it fires."""

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float, transport: asyncio.Transport) -> None:
        self.loop, self.seconds, self.transport = loop, seconds, transport
        self.timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start the clock, unless it runs already (a head arriving in pieces gets no extension)."""
        if self.timer is None and not self.transport.is_closing():
            self.timer = self.loop.call_later(self.seconds, self._expire)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self) -> None:
        self.timer = None
        if not self.transport.is_closing():
            peer = self.transport.get_extra_info("peername")
            log.debug("closing the connection of %s: no complete request head in %.1f s", peer, self.seconds)
            self.transport.close()


class _WithHeadDeadline(asyncio.Protocol):
    """Put before a uvicorn protocol in the bases: the deadline starts when the connection opens and
    stops when it closes; the protocol starts and stops it around each request head."""

    head_timeout = 10.0
    deadline: HeadDeadline | None = None
    loop: asyncio.AbstractEventLoop

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.deadline = HeadDeadline(self.loop, self.head_timeout, transport)
        self.deadline.start()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.stop()
        super().connection_lost(exc)


class H11HeadDeadline(_WithHeadDeadline, H11Protocol):
    """uvicorn's h11 protocol with the head deadline."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.deadline is None:
            return
        if self.conn.their_state is h11.IDLE:  # still waiting for (the rest of) a request head
            self.deadline.start()
        else:
            self.deadline.stop()


def _httptools_class() -> type[asyncio.Protocol] | None:
    if importlib.util.find_spec("httptools") is None:  # pragma: no cover - uvicorn[standard] has it
        return None
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsHeadDeadline(_WithHeadDeadline, HttpToolsProtocol):
        """uvicorn's httptools protocol with the head deadline."""

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self.deadline is not None:
                self.deadline.start()

        def on_headers_complete(self) -> None:
            if self.deadline is not None:
                self.deadline.stop()
            super().on_headers_complete()

    return HttpToolsHeadDeadline


@functools.cache
def protocol_class(timeout_ms: int, implementation: str = "auto") -> type[asyncio.Protocol]:
    """The protocol with a head deadline of ``timeout_ms``: httptools when installed (as uvicorn's
    "auto" chooses), else h11."""
    base = _httptools_class() if implementation in ("auto", "httptools") else None
    if base is None:
        base = H11HeadDeadline
    name = f"HeadDeadline_{timeout_ms}ms"
    attributes = {"head_timeout": timeout_ms / 1000, "__module__": __name__, "__qualname__": name}
    return type(name, (base,), attributes)


def protocol_path(timeout_headers: float) -> str:
    """The import string of the protocol with this deadline, for ``uvicorn.run(http=...)``."""
    return f"{__name__}:HeadDeadline_{max(1, round(timeout_headers * 1000))}ms"


def __getattr__(name: str) -> Any:
    match = _NAME.fullmatch(name)
    if match is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return protocol_class(int(match.group(1)))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` that come from ``[server]`` (besides host and port)."""
    server = settings.server
    return {
        "http": protocol_path(server.timeout_headers),
        "timeout_keep_alive": server.timeout_keep_alive,
        "limit_concurrency": server.limit_concurrency or None,
        "log_level": "info",
        "log_config": None,  # uvicorn's loggers write through ours (qa.logs): request ids, json
    }
