"""Fetching one web page or feed, politely and safely: http/https only, no private or loopback
addresses (checked for every redirect hop, before connecting and again on the connected socket),
redirects followed by hand up to a limit, a size cap, connect/read timeouts and a deadline for the
whole fetch, the configured user agent, robots.txt respected unless configured otherwise, and at
least ``host_delay_s`` between two requests to one host.

Every refusal or failure is a :class:`FetchError` naming the URL and the reason; nothing is stored by
this module.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
import urllib.robotparser
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import httpx

from qa.config import FetchSettings
from qa.errors import FetchError

log = logging.getLogger(__name__)

Kind = Literal["page", "feed", "robots"]
PAGE_TYPES = ("text/html", "application/xhtml+xml")
FEED_TYPES = ("xml", "rss", "atom", "rdf", "text/plain", "text/html")  # substrings of a feed's type
_CHUNK = 65536


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    status: int  # 200, or 304 for a conditional request that found nothing new
    content_type: str
    body: bytes
    fetched_at: str  # ISO 8601, UTC, seconds
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def charset(self) -> str | None:
        for part in self.content_type.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value.strip():
                return value.strip().strip('"')
        return None


def normalize_url(url: str) -> str:
    """The form a URL is compared and stored in: scheme and host lower case, no fragment."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchError(str(url)[:300], f"not a valid URL ({exc})") from exc
    return str(parsed.copy_with(fragment=None))


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class Fetcher:
    """One HTTP client for many fetches (connections reused); thread-safe."""

    def __init__(self, settings: FetchSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        timeout = httpx.Timeout(settings.timeout_s, connect=settings.timeout_s)
        self._client = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"},
            transport=transport,
            trust_env=False,  # never through a proxy from the environment: the address checks would lie
        )
        # per site: its parsed robots.txt, or True (none: all allowed) / False (unreachable: none allowed)
        self._robots: dict[str, urllib.robotparser.RobotFileParser | bool] = {}
        self._lock = threading.Lock()
        self._next_slot: dict[str, float] = {}  # host → monotonic time its next request may start

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- checks ------------------------------------------------------------------------------------
    def check_target(self, url: str) -> httpx.URL:
        """The URL parsed, or FetchError: not http(s), no host, or (unless ``allow_private``) a host
        that resolves to a private, loopback, link-local or otherwise non-public address."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise FetchError(url, f"not a valid URL ({exc})") from exc
        if parsed.scheme not in ("http", "https"):
            raise FetchError(url, f"only http and https URLs are fetched, not {parsed.scheme or 'none'!r}")
        if not parsed.host:
            raise FetchError(url, "the URL has no host")
        if self.settings.allow_private:
            return parsed
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            addresses = resolve(parsed.host, port)
        except (OSError, UnicodeError) as exc:
            raise FetchError(url, f"the host {parsed.host!r} cannot be resolved") from exc
        if not addresses or not all(_public(address) for address in addresses):
            raise FetchError(
                url, "the host is a private, loopback or reserved address (set fetch.allow_private to allow)"
            )
        return parsed

    def _check_peer(self, response: httpx.Response, url: str) -> None:
        """The address actually connected to is public too (a DNS answer may change between the check
        and the connection)."""
        if self.settings.allow_private:
            return
        stream = response.extensions.get("network_stream")
        peer = stream.get_extra_info("server_addr") if stream is not None else None
        if peer and not _public(str(peer[0])):
            raise FetchError(url, "connected to a private or loopback address; refused")

    def allowed_by_robots(self, url: httpx.URL) -> bool:
        """robots.txt of the URL's site, fetched once per site (RFC 9309: missing or 4xx → allowed;
        unreachable or 5xx → disallowed)."""
        site = f"{url.scheme}://{url.netloc.decode('ascii')}"
        with self._lock:
            rules = self._robots.get(site)
        if rules is None:
            rules = self._load_robots(site)
            with self._lock:
                self._robots[site] = rules
        if isinstance(rules, bool):
            return rules
        return rules.can_fetch(self.settings.user_agent, str(url))

    def _load_robots(self, site: str) -> urllib.robotparser.RobotFileParser | bool:
        try:
            fetched = self._get(f"{site}/robots.txt", "robots", {})
        except FetchError as exc:
            if exc.status is not None and 400 <= exc.status < 500:
                return True  # no robots.txt: everything allowed
            log.warning(
                "robots.txt of %s unreachable (%s): treating the site as disallowed", site, exc.reason
            )
            return False
        parser = urllib.robotparser.RobotFileParser(f"{site}/robots.txt")
        parser.parse(fetched.body.decode("utf-8", "replace").splitlines())
        return parser

    # -- fetching ----------------------------------------------------------------------------------
    def get(self, url: str, kind: Kind = "page", conditional: Mapping[str, str] | None = None) -> Fetched:
        """Fetch ``url`` (a page or a feed). ``conditional``: ``etag`` / ``last_modified`` of an earlier
        fetch, sent as If-None-Match / If-Modified-Since (a 304 comes back with an empty body)."""
        headers: dict[str, str] = {}
        if conditional:
            if conditional.get("etag"):
                headers["If-None-Match"] = conditional["etag"]
            if conditional.get("last_modified"):
                headers["If-Modified-Since"] = conditional["last_modified"]
        return self._get(url, kind, headers)

    def _get(self, url: str, kind: Kind, headers: dict[str, str]) -> Fetched:
        s = self.settings
        deadline = time.monotonic() + s.deadline_s
        current, visited = url, [url]
        for _hop in range(s.max_redirects + 1):
            target = self.check_target(current)
            if kind != "robots" and s.respect_robots and not self.allowed_by_robots(target):
                raise FetchError(current, "disallowed by the site's robots.txt")
            self._wait_turn(target.host)
            try:
                with self._client.stream("GET", target, headers=headers) as response:
                    self._check_peer(response, current)
                    if response.status_code in (301, 302, 303, 307, 308):
                        location = response.headers.get("location", "")
                        if not location:
                            raise FetchError(
                                current, f"HTTP {response.status_code} redirect without Location"
                            )
                        current = str(target.join(location))
                        if current in visited:
                            raise FetchError(url, f"redirect loop ({' → '.join([*visited, current])[:500]})")
                        visited.append(current)
                        continue
                    return self._read(response, current, kind, deadline)
            except httpx.TimeoutException as exc:
                raise FetchError(
                    current, f"timed out (no answer within {s.timeout_s:g} s)", transient=True
                ) from exc
            except httpx.HTTPError as exc:
                raise FetchError(
                    current, f"cannot connect or read: {type(exc).__name__}: {exc}", transient=True
                ) from exc
        raise FetchError(url, f"more than {s.max_redirects} redirects")

    def _wait_turn(self, host: str) -> None:
        """Politeness: requests to one host start at least ``host_delay_s`` apart (across threads)."""
        delay = self.settings.host_delay_s
        if delay <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_slot.get(host, now))
            self._next_slot[host] = start + delay
        if start > now:
            time.sleep(start - now)

    def _read(self, response: httpx.Response, url: str, kind: Kind, deadline: float) -> Fetched:
        s = self.settings
        now = datetime.now(UTC).replace(microsecond=0).isoformat()
        content_type = response.headers.get("content-type", "")
        kept = {k: response.headers[k] for k in ("etag", "last-modified") if k in response.headers}
        if response.status_code == 304:
            return Fetched(url, 304, content_type, b"", now, kept)
        if response.status_code != 200:
            code = response.status_code
            raise FetchError(
                url, f"HTTP {code} {response.reason_phrase}", code, transient=code >= 500 or code == 429
            )
        media = content_type.split(";", 1)[0].strip().lower()
        if kind == "page" and media not in PAGE_TYPES:
            raise FetchError(url, f"not an HTML page (content type {media or 'missing'!r})")
        if kind == "feed" and media and not any(t in media for t in FEED_TYPES):
            raise FetchError(url, f"not a feed (content type {media!r})")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > s.max_bytes:
            raise FetchError(url, f"{int(declared)} bytes, over the limit of {s.max_bytes} (fetch.max_bytes)")
        body = bytearray()
        for chunk in response.iter_raw(_CHUNK):
            body += chunk
            if len(body) > s.max_bytes:
                raise FetchError(url, f"more than {s.max_bytes} bytes (fetch.max_bytes)")
            if time.monotonic() > deadline:
                raise FetchError(
                    url, f"not received within {s.deadline_s:g} s (fetch.deadline_s)", transient=True
                )
        encoding = response.headers.get("content-encoding", "identity").lower()
        if encoding not in ("", "identity"):
            body = bytearray(self._decompress(bytes(body), encoding, url))
        return Fetched(url, 200, content_type, bytes(body), now, kept)

    def _decompress(self, raw: bytes, encoding: str, url: str) -> bytes:
        """gzip/deflate bodies, decoded with the same cap (a small compressed page can be huge)."""
        import zlib

        if encoding not in ("gzip", "x-gzip", "deflate"):
            raise FetchError(url, f"unsupported content encoding {encoding!r}")
        wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
        try:
            inflater = zlib.decompressobj(wbits)
            out = inflater.decompress(raw, self.settings.max_bytes + 1)
        except zlib.error as exc:
            raise FetchError(url, f"the {encoding} body is damaged") from exc
        if len(out) > self.settings.max_bytes or inflater.unconsumed_tail:
            raise FetchError(
                url, f"more than {self.settings.max_bytes} bytes once decompressed (fetch.max_bytes)"
            )
        return out
