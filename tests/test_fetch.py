"""Fetching pages and feeds: limits, refused targets, redirects, robots.txt, conditional requests."""

from __future__ import annotations

import gzip
import time

import httpx
import pytest

from qa.config import FetchSettings
from qa.errors import FetchError
from qa.ingest import fetch
from qa.ingest.fetch import Fetcher
from tests.news_site import NewsSite, Route, article_html


def fetcher(**overrides: object) -> Fetcher:
    values: dict[str, object] = {
        "allow_private": True,
        "host_delay_s": 0,
        "timeout_s": 1.0,
        "deadline_s": 5.0,
        **overrides,
    }
    return Fetcher(FetchSettings.model_validate(values))


def test_page_is_fetched_with_the_user_agent(site: NewsSite) -> None:
    url = site.add_article("/news/a.html", "000_a2194725df4ab5f6")
    with fetcher() as f:
        page = f.get(url)
    assert page.status == 200 and page.url == url
    assert "胡志明市".encode() in page.body
    assert page.fetched_at.endswith("+00:00")
    agents = [h.get("User-Agent") for path, h in site.requests if path == "/news/a.html"]
    assert agents == [FetchSettings().user_agent]


def test_loopback_refused_unless_allowed(site: NewsSite) -> None:
    url = site.add_article("/news/a.html", "000_a2194725df4ab5f6")
    with fetcher(allow_private=False) as f, pytest.raises(FetchError, match="private, loopback"):
        f.get(url)
    assert not site.requests  # refused before connecting


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/",
    ],
)
def test_private_addresses_refused(url: str) -> None:
    with fetcher(allow_private=False) as f, pytest.raises(FetchError, match="private, loopback"):
        f.get(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://example.com/x", "only http and https"),
        ("http://", "no host"),
    ],
)
def test_other_schemes_refused(url: str, message: str) -> None:
    with fetcher() as f, pytest.raises(FetchError, match=message):
        f.get(url)


def test_redirect_to_a_private_address_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every hop is checked: a public page may not redirect the fetcher into the private network."""
    names = {"news.example": ["93.184.216.34"], "inside.example": ["10.0.0.5"]}
    monkeypatch.setattr(fetch, "resolve", lambda host, port: names[host])
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.host == "news.example" and request.url.path == "/robots.txt":
            return httpx.Response(404)
        return httpx.Response(302, headers={"Location": "http://inside.example/admin"})

    settings = FetchSettings(allow_private=False)
    with (
        Fetcher(settings, transport=httpx.MockTransport(answer)) as f,
        pytest.raises(FetchError, match=r"inside\.example/admin: the host is a private"),
    ):
        f.get("http://news.example/story")
    assert seen == ["http://news.example/robots.txt", "http://news.example/story"]  # never the hop


def test_connected_address_checked_again(site: NewsSite, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that resolved to a public address when checked but connects to loopback (DNS rebinding)."""
    site.add_article("/news/a.html", "000_a2194725df4ab5f6")
    monkeypatch.setattr(fetch, "resolve", lambda host, port: ["93.184.216.34"])
    with (
        fetcher(allow_private=False, respect_robots=False) as f,
        pytest.raises(FetchError, match="connected to a private or loopback address"),
    ):
        f.get(f"http://localhost:{site.port}/news/a.html")


def test_redirects_followed_then_limited(site: NewsSite) -> None:
    site.add_article("/news/final.html", "000_a2194725df4ab5f6")
    site.routes["/r1"] = Route(status=301, headers={"Location": "/news/final.html"})
    with fetcher() as f:
        assert f.get(site.url("/r1")).url == site.url("/news/final.html")
    for i in range(8):
        site.routes[f"/chain{i}"] = Route(status=302, headers={"Location": f"/chain{i + 1}"})
    with fetcher(max_redirects=3) as f, pytest.raises(FetchError, match="more than 3 redirects"):
        f.get(site.url("/chain0"))


def test_redirect_loop(site: NewsSite) -> None:
    site.routes["/loop-a"] = Route(status=302, headers={"Location": "/loop-b"})
    site.routes["/loop-b"] = Route(status=302, headers={"Location": "/loop-a"})
    with fetcher() as f, pytest.raises(FetchError, match="redirect loop"):
        f.get(site.url("/loop-a"))


def test_page_that_times_out(site: NewsSite) -> None:
    site.routes["/slow"] = Route(b"<html></html>", delay_s=3.0)
    with fetcher(timeout_s=0.5) as f, pytest.raises(FetchError, match="timed out") as caught:
        f.get(site.url("/slow"))
    assert caught.value.transient  # tried again later


def test_five_megabyte_page_refused(site: NewsSite) -> None:
    big = b"<html><body>" + "新闻".encode() * (5_000_000 // 6) + b"</body></html>"
    site.routes["/big"] = Route(big)
    with fetcher(max_bytes=2_000_000) as f, pytest.raises(FetchError, match="over the limit of 2000000"):
        f.get(site.url("/big"))


def test_body_over_the_cap_without_content_length(site: NewsSite) -> None:
    """A gzip bomb: small on the wire, huge once decompressed."""
    bomb = gzip.compress(b"<html>" + b" " * 3_000_000)
    site.routes["/bomb"] = Route(bomb, headers={"Content-Encoding": "gzip"})
    with fetcher(max_bytes=1_000_000) as f, pytest.raises(FetchError, match="decompressed"):
        f.get(site.url("/bomb"))


def test_gzip_page_read(site: NewsSite) -> None:
    _, page = article_html("001_53bd41b2b23f3bca")
    site.routes["/gz"] = Route(gzip.compress(page), headers={"Content-Encoding": "gzip"})
    with fetcher() as f:
        assert f.get(site.url("/gz")).body == page


def test_non_html_response_refused(site: NewsSite) -> None:
    site.routes["/photo.png"] = Route(b"\x89PNG\r\n", content_type="image/png")
    site.routes["/data.json"] = Route(b"{}", content_type="application/json")
    with fetcher() as f:
        with pytest.raises(FetchError, match=r"not an HTML page \(content type 'image/png'"):
            f.get(site.url("/photo.png"))
        with pytest.raises(FetchError, match="not a feed"):
            f.get(site.url("/data.json"), "feed")


def test_http_errors_reported(site: NewsSite) -> None:
    with fetcher() as f, pytest.raises(FetchError, match="HTTP 404") as caught:
        f.get(site.url("/missing"))
    assert caught.value.status == 404 and not caught.value.transient
    site.routes["/busy"] = Route(status=503)
    with fetcher() as f, pytest.raises(FetchError, match="HTTP 503") as busy:
        f.get(site.url("/busy"))
    assert busy.value.transient


def test_robots_txt_respected(site: NewsSite) -> None:
    site.routes["/robots.txt"] = Route(b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    site.add_article("/private/a.html", "000_a2194725df4ab5f6")
    site.add_article("/news/a.html", "000_a2194725df4ab5f6")
    with fetcher() as f:
        assert f.get(site.url("/news/a.html")).status == 200
        with pytest.raises(FetchError, match=r"robots\.txt"):
            f.get(site.url("/private/a.html"))
    with fetcher(respect_robots=False) as f:
        assert f.get(site.url("/private/a.html")).status == 200
    assert sum(path == "/robots.txt" for path, _ in site.requests) == 1  # once per fetcher and site


def test_conditional_request(site: NewsSite) -> None:
    site.routes["/rss.xml"] = Route(b"<rss/>", content_type="application/rss+xml", etag='"v1"')
    with fetcher() as f:
        first = f.get(site.url("/rss.xml"), "feed")
        assert first.status == 200 and first.headers["etag"] == '"v1"'
        again = f.get(site.url("/rss.xml"), "feed", {"etag": first.headers["etag"]})
    assert again.status == 304 and again.body == b""
    assert site.requests[-1][1].get("If-None-Match") == '"v1"'


def test_requests_to_one_host_are_spaced(site: NewsSite) -> None:
    site.add_article("/news/a.html", "000_a2194725df4ab5f6")
    with fetcher(host_delay_s=0.4) as f:
        started = time.monotonic()
        for _ in range(3):
            f.get(site.url("/news/a.html"))  # robots.txt, then three pages: four requests
        assert time.monotonic() - started >= 3 * 0.4
