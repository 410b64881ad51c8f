"""The web chat page in a real headless browser against a real uvicorn server.

Needs Debian's Chromium at /usr/bin/chromium (``apt-get install -y chromium``; ``fonts-noto-cjk`` for
readable screenshots) and the ``playwright`` Python package, which drives that browser: no browser is
ever downloaded (``playwright install`` is never run).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qa.config import Settings
from qa.documents import NewDocument
from qa.engine import Engine
from tests.conftest import settings_in

CHROMIUM = Path(os.environ.get("QA_CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parent.parent
QUESTION = "胡志明市与中国多少个地方保持友好合作关系?"
FOLLOW_UP = "中国企业在那里有多少个有效投资项目?"
UNANSWERABLE = "特朗普在哪里演讲?"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set QA_CHROMIUM)",
    ),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """uvicorn serving ``create_app(settings, engine)`` on 127.0.0.1 in a background thread."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        import uvicorn

        from qa.api.app import create_app

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings, engine), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.server.started:
                try:
                    if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            if not self.thread.is_alive():
                break
            time.sleep(0.05)
        self.server.should_exit = True
        raise RuntimeError("the test server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _settings(tmp: Path, **sections: dict[str, Any]) -> Settings:
    return settings_in(tmp, **sections)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = _settings(tmp_path_factory.mktemp("web"))
    engine = Engine(settings).open(show_progress=False)
    engine.add_document(
        NewDocument(
            doc_id="zz_markup",
            title="<img src=x onerror=alert(1)>标记测试",
            date="2024-03-03",
            text="<script>window.pwned=1</script>蓝莓果酱节在<b>河江省</b>举行,吸引了3万名游客。",
        )
    )
    with LiveServer(settings, engine) as server:
        yield server


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=LAUNCH_ARGS,
            viewport={"width": 1366, "height": 900},
            locale="zh-CN",
        )
        context.set_default_timeout(TIMEOUT_MS)
        page = context.pages[0] if context.pages else context.new_page()
        page.problems = []  # console errors and uncaught exceptions
        page.on("pageerror", lambda exc: page.problems.append(f"pageerror: {exc}"))

        def on_console(message: Any) -> None:
            if message.type == "error":
                page.problems.append(f"console: {message.text}")

        page.on("console", on_console)
        try:
            yield page
        finally:
            context.close()


def _ask(page: Any, question: str) -> None:
    page.get_by_test_id("question").fill(question)
    page.get_by_test_id("question").press("Enter")


def test_ask_cite_open_article_follow_up_and_abstain(
    live: LiveServer, browser_page: Any, tmp_path: Path
) -> None:
    page = browser_page
    expect = sync_api.expect
    asked: list[dict[str, Any]] = []
    urls: list[str] = []

    def on_request(request: Any) -> None:
        urls.append(request.url)
        if request.url.endswith("/v1/ask"):
            asked.append(json.loads(request.post_data or "{}"))

    page.on("request", on_request)

    page.goto(live.url + "/")
    expect(page).to_have_title("中文新闻问答 · Chinese News QA")
    expect(page.get_by_test_id("status")).to_contain_text("篇文章")

    # -- a question: an answer with numbered citations
    _ask(page, QUESTION)
    answer = page.get_by_test_id("answer")
    expect(answer).to_have_count(1)
    expected = httpx.post(live.url + "/v1/ask", json={"question": QUESTION}).json()
    passages = expected["passages"]
    assert expected["answerable"] and len(passages) >= 2
    citations = answer.get_by_test_id("citation")
    expect(citations).to_have_count(len(passages))
    for i, passage in enumerate(passages):
        card = citations.nth(i)
        expect(card.get_by_test_id("citation-number")).to_have_text(str(i + 1))
        expect(card.get_by_test_id("citation-title")).to_have_text(passage["title"])
        if passage["date"]:
            expect(card.get_by_test_id("citation-date")).to_have_text(passage["date"])
        label = "相关新闻预告" if passage["section"] == "related" else "正文"
        expect(card).to_contain_text(label)
    page.screenshot(path=str(tmp_path / "answer.png"))
    refs = answer.get_by_test_id("cite-ref")
    expect(refs.first).to_have_text("[1]")
    assert asked[0] == {"question": QUESTION, "history": []}
    if expected["answer_span"] is not None:  # the short answer, shown above the sentences
        expect(answer.get_by_test_id("answer-span")).to_contain_text(expected["answer_span"]["text"])
    else:
        expect(answer.get_by_test_id("answer-span")).to_have_count(0)

    # -- citation 1 opens its article with the passage highlighted and scrolled into view
    citations.first.get_by_role("button").click()
    panel = page.get_by_test_id("article-panel")
    expect(panel).to_be_visible()
    highlight = panel.get_by_test_id("highlight")
    expect(highlight).to_have_text(passages[0]["text"], use_inner_text=False)
    assert highlight.text_content() == passages[0]["text"]
    expect(highlight).to_be_in_viewport()
    key = passages[0]["text"][passages[0]["highlight"]["start"] : passages[0]["highlight"]["end"]]
    assert highlight.locator("strong.key").text_content() == key
    expect(panel.get_by_test_id("article-title")).to_have_text(passages[0]["title"])
    expect(panel.get_by_test_id("article-meta")).to_contain_text(passages[0]["date"] or "")
    document = httpx.get(f"{live.url}/v1/documents/{passages[0]['doc_id']}").json()
    body_text = panel.get_by_test_id("article-body").text_content()
    assert body_text == document["text"]  # the whole article, unchanged around the highlight
    page.screenshot(path=str(tmp_path / "answer-with-article.png"))

    # a marker inside the answer text opens its passage too
    if len(passages) > 1:
        refs.filter(has_text="[2]").first.click()
        expect(highlight).to_have_text(passages[1]["text"], use_inner_text=False)

    # -- a follow-up carries the earlier question as history
    _ask(page, FOLLOW_UP)
    expect(page.get_by_test_id("answer")).to_have_count(2)
    assert asked[1] == {"question": FOLLOW_UP, "history": [{"role": "user", "content": QUESTION}]}
    expect(page.get_by_test_id("user-turn")).to_have_count(2)

    # -- an abstention is shown as "no answer" with its reason
    _ask(page, UNANSWERABLE)
    abstain = page.get_by_test_id("abstain")
    expect(abstain).to_be_visible()
    expect(abstain).to_contain_text("无法回答")
    expect(abstain.get_by_test_id("abstain-reason")).to_contain_text("特朗普")
    expect(abstain.get_by_test_id("citation")).to_have_count(0)
    assert [t["content"] for t in asked[2]["history"]] == [QUESTION, FOLLOW_UP]
    page.screenshot(path=str(tmp_path / "conversation.png"), full_page=True)

    # -- a new conversation starts without history
    page.get_by_test_id("new-chat").click()
    expect(page.get_by_test_id("user-turn")).to_have_count(0)
    _ask(page, QUESTION)
    expect(page.get_by_test_id("answer")).to_have_count(1)
    assert asked[3]["history"] == []

    assert all(u.startswith(live.url) for u in urls), [u for u in urls if not u.startswith(live.url)]
    assert page.problems == []
    shots = os.environ.get("QA_SCREENSHOT_DIR")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        for shot in tmp_path.glob("*.png"):
            shutil.copy(shot, Path(shots) / shot.name)


def test_server_text_is_shown_as_text_never_as_markup(live: LiveServer, browser_page: Any) -> None:
    page = browser_page
    expect = sync_api.expect
    page.goto(live.url + "/")
    _ask(page, "蓝莓果酱节在河江省举行吸引了多少游客?")
    answer = page.get_by_test_id("answer")
    expect(answer).to_be_visible()
    card = answer.get_by_test_id("citation").filter(has_text="标记测试").first
    expect(card.get_by_test_id("citation-title")).to_have_text("<img src=x onerror=alert(1)>标记测试")
    card.get_by_role("button").click()
    body = page.get_by_test_id("article-body")
    expect(body).to_contain_text("<script>window.pwned=1</script>")
    expect(body).to_contain_text("<b>河江省</b>")
    assert (
        page.locator("#conversation img, #article-panel img, #article-panel b, #article-panel script").count()
        == 0
    )
    assert page.evaluate("window.pwned") is None
    assert page.problems == []


def test_api_key_is_asked_for_and_sent(tmp_path_factory: pytest.TempPathFactory, browser_page: Any) -> None:
    settings = _settings(tmp_path_factory.mktemp("web-auth"), server={"api_keys": ["k-123"]})
    engine = Engine(settings).open(show_progress=False)
    page = browser_page
    expect = sync_api.expect
    with LiveServer(settings, engine) as server:
        page.goto(server.url + "/")
        _ask(page, QUESTION)
        error = page.get_by_test_id("error")
        expect(error).to_contain_text("401")
        expect(page.locator("#key-form")).to_be_visible()
        page.locator("#key-input").fill("k-123")
        page.locator("#key-input").press("Enter")
        expect(page.locator("#key-form")).to_be_hidden()
        with page.expect_request(lambda r: r.url.endswith("/v1/ask")) as request:
            _ask(page, QUESTION)
        assert request.value.headers.get("authorization") == "Bearer k-123"
        expect(page.get_by_test_id("answer")).to_have_count(1)
        page.get_by_test_id("citation").first.get_by_role("button").click()
        expect(page.get_by_test_id("highlight")).to_be_visible()  # documents are fetched with the key too
        assert page.evaluate("localStorage.getItem('qa.apiKey')") == "k-123"
    # 401 responses are logged by the browser as failed resources; nothing else may go wrong
    assert [p for p in page.problems if "401" not in p] == []
