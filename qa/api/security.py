"""Which requests the service accepts by where they come from: the Host header (a guard against DNS
rebinding) and, for state-changing requests, the Origin or Referer header (a guard against cross-site
writes, e.g. an HTML form on another site posting to /v1/documents).

Both checks are pure ASGI middleware that answer with the API's JSON error shape before any route runs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from qa.api.errors import error_response
from qa.config import ServerSettings

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Probes answer whatever the Host: load balancers and orchestrators probe by IP; they reveal no article.
UNCHECKED_PATHS = frozenset({"/healthz", "/readyz"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

_HOST_HEADER = re.compile(r"(?P<name>[a-z0-9_.-]+|\[[0-9a-f:.]+\])(?::(?P<port>\d{1,5}))?")
_HOSTS_KEY = "server.allowed_hosts (environment: QA_SERVER__ALLOWED_HOSTS)"
_ORIGINS_KEY = "server.allowed_origins (environment: QA_SERVER__ALLOWED_ORIGINS)"


def split_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a Host header value, lower case and without a trailing dot; None if malformed."""
    match = _HOST_HEADER.fullmatch(value.strip().lower())
    if match is None:
        return None
    port = match["port"]
    if port is not None and not 0 < int(port) < 65536:
        return None
    return match["name"].rstrip("."), int(port) if port else None


def bind_name(host: str) -> str | None:
    """The Host name of a bind address, or None for a wildcard address (every interface)."""
    name = host.strip().lower()
    if name in WILDCARD_BINDS:
        return None
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return name


@dataclass(frozen=True)
class HostPolicy:
    """The Host names a request may carry. ``any_host`` when "*" is configured."""

    names: frozenset[str]
    domains: tuple[str, ...] = ()  # ".example.com": the domain and its subdomains
    any_host: bool = False

    @classmethod
    def from_settings(cls, server: ServerSettings) -> HostPolicy:
        names = set(LOOPBACK_NAMES)
        bound = bind_name(server.host)
        if bound is not None:
            names.add(bound)
        configured = set(server.allowed_hosts)
        if not configured and bound is None:
            log.warning(
                "server.host is %r (every interface) and %s is empty: only requests for %s are "
                "accepted; list the names clients use, or '*'",
                server.host,
                _HOSTS_KEY,
                ", ".join(sorted(LOOPBACK_NAMES)),
            )
        names |= {n for n in configured if n != "*" and not n.startswith(".")}
        domains = tuple(sorted(n for n in configured if n.startswith(".")))
        return cls(frozenset(names), domains, "*" in configured)

    def allows(self, name: str) -> bool:
        if self.any_host or name in self.names:
            return True
        return any(name == d[1:] or name.endswith(d) for d in self.domains)


def _origin_key(scheme: str, name: str, port: int | None) -> str:
    port = port if port is not None else DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{name}:{port}"


def origin_of(url: str) -> str | None:
    """``scheme://host:port`` (the port always written out) of an Origin or Referer value; None if it
    has none (``null``, a relative or malformed URL)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    name = parts.hostname.lower().rstrip(".")
    if ":" in name:
        name = f"[{name}]"
    return _origin_key(scheme, name, port)


class TrustedHostMiddleware:
    """400 unless the request's Host names this service (see :class:`HostPolicy`)."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy
        self._reported: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in UNCHECKED_PATHS:
            await self.app(scope, receive, send)
            return
        value = Headers(scope=scope).get("host")
        parsed = split_host(value) if value is not None else None
        if parsed is not None and self.policy.allows(parsed[0]):
            await self.app(scope, receive, send)
            return
        if value is None:
            message = "the request has no Host header"
        elif parsed is None:
            message = f"the Host header {value[:100]!r} is malformed"
        else:
            message = (
                f"the host name {parsed[0][:100]!r} is not served here; the operator can allow it "
                f"in {_HOSTS_KEY}"
            )
            self._report(parsed[0])
        await error_response(400, "invalid_host", message)(scope, receive, send)

    def _report(self, name: str) -> None:
        if name in self._reported or len(self._reported) >= 100:  # a flood of names logs 100 lines
            return
        self._reported.add(name)
        log.warning("refused a request for host %r: add it to %s if clients use it", name[:100], _HOSTS_KEY)


class SameOriginMiddleware:
    """403 for a POST/PUT/PATCH/DELETE whose Origin (or, lacking one, Referer) is neither this service's
    own origin (the request's scheme and Host) nor an allowed origin. Requests with neither header
    (curl, server-side clients, webhooks) pass: browsers always send Origin on such requests."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        entries = set(allowed)
        self.any_origin = "*" in entries
        self.allowed = frozenset(o for e in entries if e != "*" and (o := origin_of(e)) is not None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in STATE_CHANGING or self.any_origin:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin, referer = headers.get("origin"), headers.get("referer")
        if origin is None and referer is None:
            await self.app(scope, receive, send)
            return
        claimed = origin if origin is not None else referer
        assert claimed is not None
        source = origin_of(claimed)
        if source is not None and (source == own_origin(scope, headers) or source in self.allowed):
            await self.app(scope, receive, send)
            return
        header = "Origin" if origin is not None else "Referer"
        message = (
            f"cross-site request refused: the {header} {claimed[:100]!r} is not this service's origin; "
            f"the operator can allow another site's origin in {_ORIGINS_KEY}"
        )
        await error_response(403, "cross_origin_refused", message)(scope, receive, send)


def own_origin(scope: Scope, headers: Headers) -> str | None:
    """The service's origin as this request reached it: its scheme and its Host header."""
    parsed = split_host(headers.get("host", ""))
    if parsed is None:
        return None
    scheme = str(scope.get("scheme", "http"))
    return _origin_key(scheme, parsed[0], parsed[1])
