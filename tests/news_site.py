"""A small news site on 127.0.0.1 for the ingestion tests: HTML article pages made from the seeds
(Chinese datelines, <meta>/JSON-LD dates, images with captions, related-news blocks, navigation), an RSS
feed that can change between polls, and misbehaving routes (a page that times out, a 5 MB page, a
non-HTML response, a redirect loop). It runs in a thread; ``site.routes`` can be edited while it runs.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from qa.ingest.newspage import parse_page
from qa.records import Section
from tests.conftest import seed_text


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before answering (a page that times out)
    etag: str | None = None  # answers 304 to a matching If-None-Match


def article_html(doc_id: str, *, date_style: str = "dateline", title: str | None = None) -> tuple[str, bytes]:
    """A seed as an article page: title, date (as ``date_style``: ``dateline`` 2025年01月21日 15:44,
    ``meta``, ``jsonld``, ``published`` 发布时间：…, ``none``), images with captions, the body paragraphs,
    a related-news block with the seed's teasers, and navigation. Returns (title, page)."""
    article = parse_page(seed_text(doc_id), doc_id=doc_id, source=f"{doc_id}.txt")
    title = title or article.title
    day = article.date or "2025-01-21"
    y, m, d = day.split("-")
    head = ""
    dateline = ""
    if date_style == "meta":
        head = f'<meta property="article:published_time" content="{day}T15:44:00+07:00">'
    elif date_style == "jsonld":
        head = (
            '<script type="application/ld+json">{"@context": "https://schema.org", "@type": "NewsArticle", '
            f'"headline": "{html.escape(title)}", "datePublished": "{day}T15:44:00+07:00"}}</script>'
        )
    elif date_style == "dateline":
        dateline = f'<div class="time">{y}年{m}月{d}日 15:44</div>'
    elif date_style == "published":
        dateline = f'<p class="info">发布时间：{day} 15:44</p>'
    body = [article.segment_text(s) for s in article.segments if s.section is Section.BODY]
    paragraphs = [line.strip() for part in body for line in part.split("\n") if line.strip()]
    figure = '<figure><img src="/img/anh-1.png" alt=""><figcaption>代表们在仪式上合影留念。图自越通社</figcaption></figure>'
    middle = len(paragraphs) // 2
    main = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs[:middle])
    main += figure + "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs[middle:])
    teasers = [
        (s.heading, article.segment_text(s))
        for s in article.segments
        if s.section is Section.RELATED and s.heading
    ][:4]
    related = "".join(
        f'<li><a href="/news/other-{i}.html">{html.escape(h)}</a><p>{html.escape(t)}</p></li>'
        for i, (h, t) in enumerate(teasers)
    )
    page = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(title)} | 越通社</title>{head}</head>
<body>
<header><nav><a href="/">首页</a> <a href="/news/">新闻</a> <a href="/video/">视频</a></nav></header>
<main><article>
<h1>{html.escape(title)}</h1>
{dateline}
{main}
</article>
<div class="related-news"><h3>相关新闻</h3><ul>{related}</ul></div>
</main>
<footer><p>版权所有 © 越南通讯社</p></footer>
</body></html>"""
    return title, page.encode("utf-8")


def rss(items: list[tuple[str, str, str]], title: str = "越通社 中文") -> bytes:
    """An RSS 2.0 feed of (title, link, published-date yyyy-mm-dd) items."""
    entries = ""
    for item_title, link, day in items:
        when = datetime.fromisoformat(day).replace(hour=8, tzinfo=UTC)
        entries += (
            f"<item><title>{html.escape(item_title)}</title><link>{html.escape(link)}</link>"
            f"<guid>{html.escape(link)}</guid><pubDate>{format_datetime(when)}</pubDate></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>{html.escape(title)}</title><link>http://example.com/</link>{entries}</channel></rss>"
    ).encode()


class NewsSite:
    def __init__(self) -> None:
        self.routes: dict[str, Route | Callable[[], Route]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                site.requests.append((self.path, dict(self.headers)))
                route = site.routes.get(self.path)
                if callable(route):
                    route = route()
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if route.delay_s:
                    time.sleep(route.delay_s)
                if route.etag and self.headers.get("If-None-Match") == route.etag:
                    self.send_response(304)
                    self.send_header("ETag", route.etag)
                    self.end_headers()
                    return
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(route.body)))
                if route.etag:
                    self.send_header("ETag", route.etag)
                for key, value in route.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                with suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(route.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add_article(self, path: str, doc_id: str, **kwargs: str) -> str:
        self.routes[path] = Route(article_html(doc_id, **kwargs)[1])
        return self.url(path)

    def start(self) -> NewsSite:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def news_site() -> Iterator[NewsSite]:
    site = NewsSite().start()
    try:
        yield site
    finally:
        site.stop()
