"""The web page with a written answer (generation.backend = "openai", the scripted stub server): the
checked sentences appear as they stream, a removed sentence never does, and the page says how many were
removed. A real uvicorn server and headless Chromium, like tests/test_web_page.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from qa.config import load_settings
from qa.engine import Engine
from qa.generation.sentences import strip_markers
from tests.conftest import CONFIG, settings_in
from tests.openai_stub import OpenAIStub
from tests.test_generation import BAD_NUMBER, GOOD_1, GOOD_2, NO_MARKER, OUT_OF_RANGE, QUESTION
from tests.test_web_page import CHROMIUM, LiveServer, browser_page, sync_api

__all__ = ["browser_page"]  # the fixture, shared with test_web_page

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
]


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as server:
        yield server


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, stub: OpenAIStub) -> Iterator[LiveServer]:
    generation = {"backend": "openai", "base_url": stub.base_url, "model": "stub-model", "timeout_s": 20.0}
    settings = settings_in(tmp_path_factory.mktemp("webgen"), generation=generation)
    engine = Engine(settings).open(show_progress=False)
    with LiveServer(settings, engine) as server:
        yield server


def _ask(page: Any, question: str) -> None:
    page.get_by_test_id("question").fill(question)
    page.get_by_test_id("question").press("Enter")


def test_the_page_streams_checked_sentences_only(
    live: LiveServer, browser_page: Any, stub: OpenAIStub
) -> None:
    page, expect = browser_page, sync_api.expect
    stub.script(f"{GOOD_1}{BAD_NUMBER}{NO_MARKER}{OUT_OF_RANGE}{GOOD_2}", piece=6, pause=0.15)
    page.goto(live.url + "/")
    _ask(page, QUESTION)
    streaming = page.get_by_test_id("streaming")
    expect(streaming).to_contain_text(GOOD_1.removesuffix("[1]"))  # shown before the reply has ended
    expect(streaming.get_by_test_id("cite-ref").first).to_have_text("[1]")
    answer = page.get_by_test_id("answer")
    expect(answer).to_have_count(1)
    expect(streaming).to_have_count(0)
    text = answer.get_by_test_id("answer-text").text_content()
    assert text == f"{GOOD_1}{GOOD_2}"
    for removed in (BAD_NUMBER, NO_MARKER):  # (OUT_OF_RANGE's words are part of GOOD_1's)
        assert strip_markers(removed) not in page.content()
    expect(answer.get_by_test_id("generation-note")).to_contain_text("已删去 3 句")
    expect(answer.get_by_test_id("citation")).to_have_count(load_settings(CONFIG).retrieval.top_k)
    answer.get_by_test_id("cite-ref").filter(has_text="[2]").first.click()
    expect(page.get_by_test_id("highlight")).to_be_visible()
    assert page.problems == []


def test_the_page_shows_extracts_when_the_model_fails(
    live: LiveServer, browser_page: Any, stub: OpenAIStub
) -> None:
    page, expect = browser_page, sync_api.expect
    stub.script(status=500)
    page.goto(live.url + "/")
    _ask(page, QUESTION)
    answer = page.get_by_test_id("answer")
    expect(answer.get_by_test_id("generation-note")).to_contain_text("原文摘录")
    expect(answer.get_by_test_id("cite-ref").first).to_have_text("[1]")
    assert page.problems == []
