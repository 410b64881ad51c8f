"""Live ingestion with the real model (marked ``model``): a feed's pages are answered from with their
URL and date, and a republished copy of a seed is stored once and cited once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qa.config import load_settings
from qa.engine import Engine
from qa.live.pages import PageIngester, web_doc_id
from qa.live.poller import FeedPoller
from tests.conftest import CONFIG, SEEDS
from tests.news_site import NewsSite, Route, rss

pytestmark = pytest.mark.model
NEW = "000_a2194725df4ab5f6"  # fetched from the site instead of the corpus
COPIED = "003_de8d194c5a4a5bf1"  # in the corpus, and republished on the site


def test_feed_answered_with_url_and_date_and_copy_cited_once(tmp_path: Path, site: NewsSite) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for path in SEEDS.glob("*.txt"):
        if path.stem != NEW:
            shutil.copy(path, corpus / path.name)
    settings = load_settings(
        CONFIG,
        corpus={"dir": str(corpus)},
        index={"dir": str(tmp_path / "index"), "show_progress": False},
        fetch={"allow_private": True, "host_delay_s": 0},
    )
    new = site.add_article("/news/hcmc.html", NEW, date_style="dateline")
    copy = site.add_article("/wire/hanoi.html", COPIED, date_style="jsonld")
    items = [("胡志明市", new, "2025-01-21"), ("河内", copy, "2024-05-23")]
    site.routes["/rss.xml"] = Route(rss(items), content_type="application/rss+xml")
    engine = Engine(settings).open(show_progress=False)

    (report,) = FeedPoller(PageIngester(engine), [site.url("/rss.xml")]).poll() or []
    assert [o.status for o in report.items] == ["added", "duplicate"]

    answer = engine.ask("胡志明市与中国多少个地方保持友好合作关系?")
    assert answer.answerable and answer.span is not None and answer.span.text == "8个"
    assert (answer.hits[0].chunk.doc_id, answer.hits[0].url, answer.hits[0].date) == (
        web_doc_id(new),
        new,
        "2025-01-21",
    )
    hanoi = engine.ask("河内市高级代表团访问了中国哪个省?", top_k=10)
    assert hanoi.answerable and {h.chunk.doc_id for h in hanoi.hits} & {COPIED}
    assert web_doc_id(copy) not in {h.chunk.doc_id for h in hanoi.hits}
    assert engine.index.articles[COPIED].other_urls == (copy,)
