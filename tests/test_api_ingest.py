"""Live ingestion through the HTTP service: POST /v1/documents {"url"}, citations with URL and date in
/v1/ask and the chat completion, and [feeds] polled by the service itself, reported on /readyz."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qa.api.app import create_app
from qa.config import Settings
from qa.engine import Engine
from qa.live.pages import web_doc_id
from tests.conftest import SEEDS, settings_in
from tests.news_site import NewsSite, Route, article_html, rss

SEED = "000_a2194725df4ab5f6"
QUESTION = "胡志明市与中国多少个地方保持友好合作关系?"


def service(
    root: Path, *, without: tuple[str, ...] = (SEED,), **sections: dict[str, Any]
) -> tuple[Settings, Engine]:
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    for path in SEEDS.glob("*.txt"):
        if path.stem not in without:
            shutil.copy(path, corpus / path.name)
    fetch = {"allow_private": True, "host_delay_s": 0, "timeout_s": 0.5, **sections.pop("fetch", {})}
    settings = settings_in(root, fetch=fetch, **sections)
    return settings, Engine(settings).open(show_progress=False)


def test_add_a_page_by_url(tmp_path: Path, site: NewsSite) -> None:
    settings, engine = service(tmp_path)
    url = site.add_article("/news/hcmc.html", SEED)
    with TestClient(create_app(settings, engine)) as client:
        created = client.post("/v1/documents", json={"url": url})
        assert created.status_code == 201, created.text
        body = created.json()
        assert (body["doc_id"], body["url"], body["date"], body["outcome"]) == (
            web_doc_id(url),
            url,
            "2025-01-21",
            "added",
        )
        assert body["fetched_at"] and body["sections"]["related"] > 0
        assert created.headers["location"] == f"/v1/documents/{web_doc_id(url)}"

        again = client.post("/v1/documents", json={"url": url})
        assert again.status_code == 200 and again.json()["outcome"] == "unchanged"

        _, page = article_html(SEED, date_style="jsonld")
        site.routes["/elsewhere/copy.html"] = Route(page)
        copy_url = site.url("/elsewhere/copy.html")
        copy = client.post("/v1/documents", json={"url": copy_url})
        assert copy.status_code == 200 and copy.json()["outcome"] == "duplicate"
        assert copy.json()["doc_id"] == web_doc_id(url) and copy.json()["other_urls"] == [copy_url]

        answer = client.post("/v1/ask", json={"question": QUESTION}).json()
        top = answer["passages"][0]
        assert (top["url"], top["date"]) == (url, "2025-01-21")
        assert sum(p["doc_id"] == web_doc_id(copy_url) for p in answer["passages"]) == 0

        chat = client.post(
            "/v1/chat/completions",
            json={"model": "zh-news-qa", "messages": [{"role": "user", "content": QUESTION}]},
        ).json()
        assert (chat["citations"][0]["url"], chat["citations"][0]["date"]) == (url, "2025-01-21")

        text = client.get(f"/v1/documents/{web_doc_id(url)}").json()["text"]
        assert text[top["start"] : top["end"]] == top["text"]


@pytest.mark.parametrize(
    ("path", "route", "message"),
    [
        ("/slow", Route(b"<html></html>", delay_s=2.0), "timed out"),
        ("/big", Route(b"<p>" + b"x" * 5_000_000), "over the limit"),
        ("/img", Route(b"GIF89a", content_type="image/gif"), "not an HTML page"),
        ("/loop", Route(status=302, headers={"Location": "/loop"}), "redirect loop"),
    ],
)
def test_bad_pages_are_422_and_lose_nothing(
    tmp_path: Path, site: NewsSite, path: str, route: Route, message: str
) -> None:
    settings, engine = service(tmp_path, without=())
    site.routes[path] = route
    with TestClient(create_app(settings, engine)) as client:
        before = client.get("/v1/documents").json()
        refused = client.post("/v1/documents", json={"url": site.url(path)})
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["code"] == "fetch_failed" and message in error["message"]
        assert client.get("/v1/documents").json() == before


def test_private_targets_refused_by_default(tmp_path: Path, site: NewsSite) -> None:
    settings, engine = service(tmp_path, fetch={"allow_private": False})
    url = site.add_article("/news/hcmc.html", SEED)
    with TestClient(create_app(settings, engine)) as client:
        for target in (url, "http://169.254.169.254/latest/meta-data/", "file:///etc/passwd"):
            refused = client.post("/v1/documents", json={"url": target})
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "fetch_failed", target
    assert not [p for p, _ in site.requests if p.startswith("/news/")]


def test_url_request_validated(tmp_path: Path) -> None:
    settings, engine = service(tmp_path)
    with TestClient(create_app(settings, engine)) as client:
        for body in ({"url": ""}, {"url": "http://x/a", "colour": "red"}, {"url": 5}):
            assert client.post("/v1/documents", json=body).status_code == 422, body


def wait_for(check: Any, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if check():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s")


def test_service_polls_its_feeds_and_reports_them(tmp_path: Path, site: NewsSite) -> None:
    """An item added to the feed is searchable within interval_s + the write time, without a restart;
    a broken feed is reported on /readyz and does not stop the other."""
    feed, broken = site.url("/rss.xml"), site.url("/broken.xml")
    settings, engine = service(
        tmp_path,
        without=(SEED, "001_53bd41b2b23f3bca"),
        feeds={"urls": [feed, broken], "interval_s": 1},
    )
    first = site.add_article("/news/0.html", "001_53bd41b2b23f3bca")
    site.routes["/rss.xml"] = Route(rss([("越中", first, "2025-01-10")]), content_type="application/rss+xml")
    site.routes["/broken.xml"] = Route(status=503)
    with TestClient(create_app(settings, engine)) as client:
        wait_for(lambda: web_doc_id(first) in engine.index.articles, 20)
        second = site.add_article("/news/1.html", SEED)
        items = [("胡志明市", second, "2025-01-21"), ("越中", first, "2025-01-10")]
        site.routes["/rss.xml"] = Route(rss(items), content_type="application/rss+xml")
        waited = wait_for(lambda: client.get(f"/v1/documents/{web_doc_id(second)}").status_code == 200, 20)
        assert waited < 1 + 5  # interval_s + the write time (fake encoder), with slack for a busy machine
        answer = client.post("/v1/ask", json={"question": QUESTION}).json()
        assert answer["passages"][0]["url"] == second

        ready = client.get("/readyz")
        assert ready.status_code == 200
        feeds = {f["url"]: f for f in ready.json()["feeds"]}
        assert feeds[feed]["ok"] and feeds[feed]["added"] == 2
        assert not feeds[broken]["ok"] and "HTTP 503" in feeds[broken]["last_error"]
        assert feeds[broken]["failures"] >= 1
    assert [p for p, _ in site.requests].count("/news/1.html") == 1  # seen items are not fetched again


def test_fetching_needs_a_full_access_key(tmp_path: Path, site: NewsSite) -> None:
    settings, engine = service(tmp_path, server={"api_keys": ["full"], "read_keys": ["read"]})
    url = site.add_article("/news/hcmc.html", SEED)
    with TestClient(create_app(settings, engine)) as client:
        read = client.post("/v1/documents", json={"url": url}, headers={"Authorization": "Bearer read"})
        assert read.status_code == 403 and read.json()["error"]["code"] == "read_only_key"
        assert not [p for p, _ in site.requests if p.startswith("/news/")]
        full = client.post("/v1/documents", json={"url": url}, headers={"Authorization": "Bearer full"})
        assert full.status_code == 201
