"""`qa ingest URL… / --feed URL`, `qa watch` and `qa ask --since`, end to end through the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.news_site import NewsSite, Route, rss
from tests.test_cli import config as _config  # noqa: F401  (the fixture, reused)

FETCHED = ("000_a2194725df4ab5f6", "001_53bd41b2b23f3bca")
QUESTION = "胡志明市与中国多少个地方保持友好合作关系?"


@pytest.fixture
def config(tmp_path: Path, _config: Path) -> Path:  # noqa: F811
    corpus = tmp_path / "corpus"
    for doc_id in FETCHED:  # these two come from the site instead
        (corpus / f"{doc_id}.txt").unlink()
    text = _config.read_text(encoding="utf-8").replace("allow_private = false", "allow_private = true", 1)
    text = text.replace("timeout_s = 10.0", "timeout_s = 1.0", 1).replace(
        "host_delay_s = 1.0", "host_delay_s = 0", 1
    )
    _config.write_text(text, encoding="utf-8")
    return _config


def qa(config: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from qa.cli import main; main()", "--config", str(config), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, env={**os.environ, **env}
    )


def test_feed_then_ask_cites_the_page_url_and_date(config: Path, site: NewsSite) -> None:
    urls = [site.add_article(f"/news/{i}.html", doc_id) for i, doc_id in enumerate(FETCHED)]
    site.routes["/slow.html"] = Route(b"<html></html>", delay_s=3.0)
    items = [("胡志明市", urls[0], "2025-01-21"), ("越中", urls[1], "2025-01-10")]
    items.append(("慢", site.url("/slow.html"), "2025-01-09"))
    site.routes["/rss.xml"] = Route(rss(items), content_type="application/rss+xml")

    result = qa(config, "ingest", "--feed", site.url("/rss.xml"))
    assert result.returncode == 1, result.stdout  # one item failed: reported, the others stored
    assert result.stdout.count("added") == 2
    assert "failed" in result.stdout and "timed out" in result.stdout and "/slow.html" in result.stdout

    asked = qa(config, "ask", QUESTION, "--json")
    assert asked.returncode == 0, asked.stderr
    top = json.loads(asked.stdout)["passages"][0]
    assert (top["url"], top["date"]) == (urls[0], "2025-01-21")
    stored = [
        json.loads(line)
        for path in (config.parent / "corpus").glob("*.jsonl")
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    record = next(r for r in stored if r["id"] == top["doc_id"])
    assert record["url"] == urls[0] and record["fetched_at"]
    assert record["text"][top["start"] : top["end"]] == top["text"]

    human = qa(config, "ask", QUESTION)
    assert urls[0] in human.stdout and "2025-01-21" in human.stdout

    again = qa(config, "ingest", urls[0], site.url("/nowhere.html"))
    assert again.returncode == 1
    assert "unchanged" in again.stdout and "HTTP 404" in again.stdout


def test_republished_seed_stored_once(config: Path, site: NewsSite) -> None:
    url = site.add_article("/wire/story.html", "003_de8d194c5a4a5bf1", date_style="jsonld")
    result = qa(config, "ingest", url)
    assert result.returncode == 0, result.stderr
    assert "duplicate" in result.stdout and "003_de8d194c5a4a5bf1" in result.stdout
    assert not list((config.parent / "corpus").glob("web_*"))


def test_watch_once_polls_the_configured_feeds(config: Path, site: NewsSite) -> None:
    url = site.add_article("/news/0.html", FETCHED[0])
    site.routes["/rss.xml"] = Route(
        rss([("胡志明市", url, "2025-01-21")]), content_type="application/rss+xml"
    )
    feeds = json.dumps([site.url("/rss.xml"), site.url("/broken.xml")])
    result = qa(config, "watch", "--once", QA_FEEDS__URLS=feeds)
    assert result.returncode == 1  # the broken feed
    assert "1 new items, 1 stored" in result.stdout and "feed failed" in result.stdout
    assert "no feeds to watch" in qa(config, "watch", "--once").stderr


def test_since(config: Path) -> None:
    # the seeds are dated 2023-2025: none is from the last week (relative to today), all of 50 years
    recent = qa(config, "ask", "越中贸易额是多少?", "--json", "--since", "7d")
    assert recent.returncode == 0, recent.stderr
    assert json.loads(recent.stdout)["answerable"] is False
    old = qa(config, "ask", "越中贸易额是多少?", "--json", "--since", "50y")
    assert json.loads(old.stdout)["passages"]
    bad = qa(config, "ask", "越中贸易额是多少?", "--since", "soon")
    assert bad.returncode == 1 and "--since" in bad.stderr


def test_dry_run_previews_pages_and_stores_nothing(config: Path, site: NewsSite) -> None:
    new = site.add_article("/news/0.html", FETCHED[0])
    copy = site.add_article("/wire/3.html", "003_de8d194c5a4a5bf1")
    files = sorted(p.name for p in (config.parent / "corpus").iterdir())
    result = qa(config, "ingest", "--dry-run", new, copy, site.url("/missing.html"))
    assert result.returncode == 1  # the missing page
    lines = result.stdout.splitlines()
    assert any(new in line and "2025-01-21" in line and "teaser segments" in line for line in lines)
    assert any(copy in line and "a copy of 003_de8d194c5a4a5bf1" in line for line in lines)
    assert any("failed" in line and "HTTP 404" in line for line in lines)
    assert sorted(p.name for p in (config.parent / "corpus").iterdir()) == files
    assert not (config.parent / "index").exists()  # nothing built either
