"""Feeds polled: new items ingested, seen ones skipped, conditional requests, a feed that changes
between polls, failing feeds backed off and reported without stopping the others, state kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from qa.config import Settings
from qa.engine import Engine
from qa.live.pages import PageIngester, web_doc_id
from qa.live.poller import FeedPoller, feed_status, poll_lock, read_states
from tests.conftest import SEEDS, settings_in
from tests.news_site import NewsSite, Route, rss

FETCHED = ("000_a2194725df4ab5f6", "001_53bd41b2b23f3bca", "002_714598442bb43c6e")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The seeds but the three the feed will bring."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for path in SEEDS.glob("*.txt"):
        if path.stem not in FETCHED:
            shutil.copy(path, corpus / path.name)
    return settings_in(
        tmp_path, fetch={"allow_private": True, "host_delay_s": 0, "timeout_s": 0.5}, feeds={"interval_s": 60}
    )


def polls(outcome: str) -> float:
    """``qa_feed_polls_total{outcome}`` as /metrics reports it."""
    return REGISTRY.get_sample_value("qa_feed_polls_total", {"outcome": outcome}) or 0.0


def publish(site: NewsSite, count: int, version: str) -> list[str]:
    urls = [site.add_article(f"/news/{i}.html", doc_id) for i, doc_id in enumerate(FETCHED[:count])]
    items = [(f"新闻 {i}", url, "2025-01-20") for i, url in enumerate(urls)]
    site.routes["/rss.xml"] = Route(rss(items), content_type="application/rss+xml", etag=f'"{version}"')
    return urls


def page_requests(site: NewsSite) -> list[str]:
    return [path for path, _ in site.requests if path.startswith("/news/")]


def test_feed_that_changes_between_polls(settings: Settings, site: NewsSite) -> None:
    engine = Engine(settings).open(show_progress=False)
    feed = site.url("/rss.xml")
    poller = FeedPoller(PageIngester(engine), [feed])
    urls = publish(site, 2, "v1")

    (report,) = poller.poll() or []
    assert report.outcome == "ok" and [o.status for o in report.items] == ["added", "added"]
    assert {web_doc_id(u) for u in urls} <= set(engine.index.articles)
    assert engine.index.articles[web_doc_id(urls[0])].date == "2025-01-21"  # the page's own date

    assert poller.poll() == []  # not due before interval_s
    (again,) = poller.poll(force=True) or []
    assert again.outcome == "not_modified"  # If-None-Match: "v1" → 304
    assert site.requests[-1][1].get("If-None-Match") == '"v1"'

    urls = publish(site, 3, "v2")  # one more item
    (third,) = poller.poll(force=True) or []
    assert [(o.url, o.status) for o in third.items] == [(urls[2], "added")]
    assert sorted(page_requests(site)) == ["/news/0.html", "/news/1.html", "/news/2.html"]  # each once

    # a restart remembers what was seen
    fresh = FeedPoller(PageIngester(Engine(settings).open(show_progress=False)), [feed])
    site.routes["/rss.xml"] = Route(site.routes["/rss.xml"].body, content_type="application/rss+xml")  # type: ignore[union-attr]
    (after,) = fresh.poll(force=True) or []
    assert after.outcome == "ok" and after.items == ()
    status = feed_status(settings.index_dir, [feed])[0]
    assert status["ok"] and status["added"] == 3 and status["seen"] == 3 and status["last_error"] is None


def test_a_failing_feed_backs_off_and_never_stops_the_others(settings: Settings, site: NewsSite) -> None:
    engine = Engine(settings).open(show_progress=False)
    publish(site, 1, "v1")
    site.routes["/broken.xml"] = Route(status=500)
    site.routes["/html.xml"] = Route(b"<html><body>not a feed</body></html>")
    feeds = [site.url("/broken.xml"), site.url("/missing.xml"), site.url("/html.xml"), site.url("/rss.xml")]
    poller = FeedPoller(PageIngester(engine), feeds)
    before = {o: polls(o) for o in ("ok", "error")}

    reports = {r.url: r for r in poller.poll() or []}
    assert reports[feeds[3]].outcome == "ok" and reports[feeds[3]].items[0].status == "added"
    assert "HTTP 500" in (reports[feeds[0]].error or "")
    assert "HTTP 404" in (reports[feeds[1]].error or "")
    assert "not an RSS or Atom feed" in (reports[feeds[2]].error or "")
    assert polls("error") - before["error"] == 3 and polls("ok") - before["ok"] == 1

    states = read_states(settings.index_dir)
    first_wait = states[feeds[0]].next_poll - (states[feeds[3]].next_poll - 60)
    poller.poll(force=True)
    states = read_states(settings.index_dir)
    assert states[feeds[0]].failures == 2
    second_wait = states[feeds[0]].next_poll - (states[feeds[3]].next_poll - 60)
    assert 55 < first_wait < 65 and 115 < second_wait < 125  # doubled
    status = {s["url"]: s for s in feed_status(settings.index_dir, feeds)}
    assert not status[feeds[0]]["ok"] and status[feeds[0]]["failures"] == 2
    assert status[feeds[3]]["ok"]


def test_item_that_times_out_is_tried_again(settings: Settings, site: NewsSite) -> None:
    engine = Engine(settings).open(show_progress=False)
    urls = publish(site, 1, "v1")
    good = site.routes["/news/0.html"]
    site.routes["/news/0.html"] = Route(b"<html></html>", delay_s=2.0)
    poller = FeedPoller(PageIngester(engine), [site.url("/rss.xml")])
    (first,) = poller.poll() or []
    assert first.items[0].status == "failed" and "timed out" in (first.items[0].error or "")
    assert read_states(settings.index_dir)[site.url("/rss.xml")].etag is None  # so the feed is read again
    site.routes["/news/0.html"] = good
    (second,) = poller.poll(force=True) or []
    assert [(o.url, o.status) for o in second.items] == [(urls[0], "added")]


def test_a_page_that_is_not_an_article_is_given_up_at_once(settings: Settings, site: NewsSite) -> None:
    engine = Engine(settings).open(show_progress=False)
    site.routes["/doc.pdf"] = Route(b"%PDF", content_type="application/pdf")
    items = [("报告", site.url("/doc.pdf"), "2025-01-20")]
    site.routes["/rss.xml"] = Route(rss(items), content_type="application/rss+xml")
    poller = FeedPoller(PageIngester(engine), [site.url("/rss.xml")])
    (first,) = poller.poll() or []
    assert "not an HTML page" in (first.items[0].error or "")
    (second,) = poller.poll(force=True) or []
    assert second.items == ()  # seen: not fetched again


def test_one_process_polls_at_a_time(settings: Settings, site: NewsSite) -> None:
    engine = Engine(settings).open(show_progress=False)
    publish(site, 1, "v1")
    poller = FeedPoller(PageIngester(engine), [site.url("/rss.xml")])
    with poll_lock(settings.index_dir) as mine:
        assert mine
        assert poller.poll() is None  # another poller holds the lock
    assert poller.poll() is not None


def test_atom_feed_with_relative_links(settings: Settings, site: NewsSite) -> None:
    engine = Engine(settings).open(show_progress=False)
    site.add_article("/news/0.html", FETCHED[0], date_style="none")  # the page states no date
    atom = """<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">
    <title>越通社</title><id>urn:vna</id><updated>2025-01-21T08:00:00Z</updated>
    <entry><title>胡志明市</title><id>urn:vna:1</id><link href="/news/0.html"/>
    <published>2025-01-21T23:30:00+07:00</published><updated>2025-01-22T08:00:00Z</updated></entry></feed>"""
    site.routes["/atom.xml"] = Route(atom.encode(), content_type="application/atom+xml")
    (report,) = FeedPoller(PageIngester(engine), [site.url("/atom.xml")]).poll() or []
    (outcome,) = report.items
    assert (outcome.url, outcome.status) == (site.url("/news/0.html"), "added")
    assert outcome.date == "2025-01-21"  # the item's own published day dates the undated page


def test_a_page_that_breaks_the_extraction_does_not_stop_the_feed(
    settings: Settings, site: NewsSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qa.live.pages

    engine = Engine(settings).open(show_progress=False)
    urls = publish(site, 2, "v1")
    real = qa.live.pages.extract_page

    def flaky(html: bytes, url: str, *args: object) -> object:
        if url == urls[0]:
            raise RuntimeError("an lxml bug")
        return real(html, url, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(qa.live.pages, "extract_page", flaky)
    (report,) = FeedPoller(PageIngester(engine), [site.url("/rss.xml")]).poll() or []
    assert [o.status for o in report.items] == ["failed", "added"]
    assert report.items[0].error == "unexpected error: RuntimeError"
