"""The web page: each citation links to where its article was published and shows its date; questions
can be limited to a date range or to the article open in the panel (real browser, real server)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qa.documents import NewDocument
from qa.engine import Engine
from tests.conftest import seed_text, settings_in
from tests.test_web_page import CHROMIUM, QUESTION, LiveServer, _ask, browser_page, sync_api

__all__ = ["browser_page"]  # the fixture, reused

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
]
URL = "https://news.example.com/2025/01/21/hcmc.html"
SEED = "000_a2194725df4ab5f6"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = settings_in(tmp_path_factory.mktemp("web-filters"))
    engine = Engine(settings).open(show_progress=False)
    engine.delete_document(SEED)  # the same story, now as a page fetched from the web with its URL
    engine.add_document(
        NewDocument(
            doc_id="web_hcmc",
            text=seed_text(SEED),
            date="2025-01-21",
            url=URL,
            fetched_at="2026-01-01T00:00:00+00:00",
        )
    )
    with LiveServer(settings, engine) as server:
        yield server


def test_citation_links_and_filters(live: LiveServer, browser_page: Any, tmp_path: Path) -> None:
    page = browser_page
    expect = sync_api.expect
    asked: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: asked.append(json.loads(r.post_data or "{}")) if r.url.endswith("/v1/ask") else None,
    )
    page.goto(live.url + "/")

    _ask(page, QUESTION)
    answer = page.get_by_test_id("answer")
    expect(answer).to_have_count(1)
    first = answer.get_by_test_id("citation").first
    link = first.get_by_test_id("citation-link")
    expect(link).to_have_attribute("href", URL)
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(link).to_contain_text("news.example.com")
    expect(first.get_by_test_id("citation-date")).to_have_text("2025-01-21")
    assert "filters" not in asked[0]

    # the article panel links to the source too, and offers "this article only"
    first.get_by_role("button").click()
    panel = page.get_by_test_id("article-panel")
    expect(panel.get_by_test_id("article-link")).to_have_attribute("href", URL)
    panel.get_by_test_id("article-only").click()
    expect(page.get_by_test_id("doc-filter")).to_be_visible()
    _ask(page, "越中贸易额是多少?")
    expect(page.get_by_test_id("answer").or_(page.get_by_test_id("abstain"))).to_have_count(2)
    assert asked[1]["filters"] == {"doc_ids": ["web_hcmc"]}
    cited = page.locator(".turn.bot").nth(1).get_by_test_id("citation")
    for i in range(cited.count()):
        assert cited.nth(i).get_attribute("data-doc-id") == "web_hcmc"

    # a date range; a reversed one is refused on the page, before any request
    page.get_by_test_id("doc-filter-clear").click()
    page.get_by_test_id("date-from").fill("2025-01-01")
    page.get_by_test_id("date-to").fill("2025-01-31")
    _ask(page, QUESTION)
    expect(page.locator(".turn.bot")).to_have_count(3)
    assert asked[2]["filters"] == {"date_from": "2025-01-01", "date_to": "2025-01-31"}
    for date in page.locator(".turn.bot").nth(2).get_by_test_id("citation-date").all_text_contents():
        assert "2025-01-01" <= date <= "2025-01-31"
    page.get_by_test_id("date-from").fill("2025-02-01")
    _ask(page, QUESTION)
    expect(page.locator("#filter-error")).to_be_visible()
    assert len(asked) == 3
    expect(page.get_by_test_id("question")).to_have_value(QUESTION)  # kept while the dates are fixed
    page.screenshot(path=str(tmp_path / "filters.png"))
    assert page.problems == []
