"""A real uvicorn server on 127.0.0.1, driven by the official openai client and by httpx."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from openai import OpenAI

from qa.api.app import create_app
from qa.config import Settings
from qa.engine import Engine
from tests.conftest import settings_in

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
HCMC = "000_a2194725df4ab5f6"
QUESTION = "胡志明市与中国多少个城市建立了友好合作关系？"
NEW_TEXT = (
    "芽庄市与昆明市签署友好城市协议\n\n"
    "3月5日,芽庄市与昆明市在芽庄签署友好城市协议,双方将开通直航航线,并在旅游、教育和农业领域开展合作。\n"
)


def make_settings(root: Path, **sections: dict[str, Any]) -> Settings:
    return settings_in(root, **sections)


class LiveServer:
    """``create_app(settings)`` served by uvicorn in a background thread on a free port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    @property
    def engine(self) -> Engine:
        engine = self.app.state.engine
        assert isinstance(engine, Engine)
        return engine

    def start(self, timeout: float = 60) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.thread.is_alive(), "the server thread died"
            time.sleep(0.05)
        raise AssertionError("the server did not become ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.socket.close()
        assert not self.thread.is_alive(), "the server did not stop"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(make_settings(tmp_path_factory.mktemp("live")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def oai(live: LiveServer) -> OpenAI:
    return OpenAI(base_url=f"{live.base}/v1", api_key="x", max_retries=0, timeout=30)


@pytest.fixture
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base, timeout=30) as client:
        yield client


def source_text(corpus: Path, doc_id: str) -> str:
    with open(corpus / f"{doc_id}.txt", encoding="utf-8") as handle:
        return handle.read()


def check_citations(citations: list[dict[str, Any]], corpus: Path) -> None:
    assert citations, "no citations"
    for rank, passage in enumerate(citations, start=1):
        assert passage["rank"] == rank
        assert source_text(corpus, passage["doc_id"])[passage["start"] : passage["end"]] == passage["text"]


# -- the openai client -----------------------------------------------------------------------------


def test_openai_client_chat_completion(oai: OpenAI, live: LiveServer) -> None:
    completion = oai.chat.completions.create(
        model="zh-news-qa",
        messages=[{"role": "system", "content": "只根据新闻回答"}, {"role": "user", "content": QUESTION}],
        temperature=0.1,
        max_tokens=200,
    )
    assert completion.object == "chat.completion"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert choice.message.content and "[1]" in choice.message.content
    assert completion.usage is not None and completion.usage.total_tokens > 0
    extra = completion.model_extra or {}
    check_citations(extra["citations"], live.settings.corpus_dir)
    assert extra["citations"][0]["doc_id"] == HCMC


def test_openai_client_streaming(oai: OpenAI, live: LiveServer) -> None:
    messages: Any = [{"role": "user", "content": QUESTION}]
    expected = oai.chat.completions.create(model="zh-news-qa", messages=messages).choices[0].message.content
    stream = oai.chat.completions.create(
        model="zh-news-qa", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == expected
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens > 0
    check_citations((last.model_extra or {})["citations"], live.settings.corpus_dir)


def test_openai_client_follow_up_and_abstention(oai: OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="zh-news-qa",
        messages=[
            {"role": "user", "content": "胡志明市与中国的合作情况如何？"},
            {"role": "assistant", "content": "……"},
            {"role": "user", "content": "日本与越南的贸易额是多少？"},
        ],
    )
    assert "[1]" not in (completion.choices[0].message.content or "")
    assert (completion.model_extra or {})["citations"] == []


def test_openai_client_errors_and_models(oai: OpenAI) -> None:
    assert [m.id for m in oai.models.list()] == ["zh-news-qa"]
    with pytest.raises(openai.UnprocessableEntityError) as info:
        oai.chat.completions.create(model="zh-news-qa", messages=[{"role": "user", "content": "   "}])
    assert "empty" in info.value.message
    with pytest.raises(openai.UnprocessableEntityError):
        oai.chat.completions.create(
            model="zh-news-qa", messages=[{"role": "user", "content": "问" * 2001}], stream=True
        )


def test_openai_client_with_api_keys(tmp_path: Path) -> None:
    server = LiveServer(make_settings(tmp_path, server={"api_keys": ["s3cret"]}))
    server.start()
    try:
        wrong = OpenAI(base_url=f"{server.base}/v1", api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.chat.completions.create(model="m", messages=[{"role": "user", "content": QUESTION}])
        right = OpenAI(base_url=f"{server.base}/v1", api_key="s3cret", max_retries=0)
        completion = right.chat.completions.create(
            model="m", messages=[{"role": "user", "content": QUESTION}]
        )
        assert "[1]" in (completion.choices[0].message.content or "")
        assert httpx.get(f"{server.base}/healthz").status_code == 200
        assert httpx.get(f"{server.base}/readyz").status_code == 200
        denied = httpx.post(f"{server.base}/v1/documents", json={"doc_id": "intruder", "text": NEW_TEXT})
        assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Bearer")
        assert not list(server.settings.corpus_dir.glob("intruder*"))
    finally:
        server.stop()


# -- httpx -----------------------------------------------------------------------------------------


def test_probes_and_ask(http: httpx.Client, live: LiveServer) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz").json()
    assert ready["status"] == "ready" and ready["articles"] >= 5 and ready["passages"] > 0
    answer = http.post("/v1/ask", json={"question": QUESTION, "top_k": 3}).json()
    assert answer["answerable"] and len(answer["passages"]) <= 3
    check_citations(answer["passages"], live.settings.corpus_dir)
    assert http.get("/").status_code == 200
    assert http.get("/openapi.json").json()["paths"]["/v1/ask"]["post"]["summary"]


def test_documents_add_ask_delete(http: httpx.Client, live: LiveServer) -> None:
    question = "芽庄市与昆明市签署了什么协议？"
    added = http.post("/v1/documents", json={"doc_id": "live-nhatrang", "text": NEW_TEXT})
    assert added.status_code == 201, added.text
    uploaded = http.post("/v1/documents", files={"file": ("live-upload.txt", NEW_TEXT.encode("utf-8"))})
    assert uploaded.status_code == 201, uploaded.text
    cited = {p["doc_id"] for p in http.post("/v1/ask", json={"question": question}).json()["passages"]}
    assert len(cited & {"live-nhatrang", "live-upload"}) == 1  # one text twice: one story, cited once
    assert all(http.get(f"/v1/documents/{d}").status_code == 200 for d in ("live-nhatrang", "live-upload"))
    assert http.get("/v1/documents/live-nhatrang").json()["text"] == source_text(
        live.settings.corpus_dir, "live-nhatrang"
    )

    for doc_id in ("live-nhatrang", "live-upload"):
        assert http.delete(f"/v1/documents/{doc_id}").status_code == 204
        assert http.get(f"/v1/documents/{doc_id}").status_code == 404
    answer = http.post("/v1/ask", json={"question": question, "top_k": 50}).json()
    assert not {"live-nhatrang", "live-upload"} & {p["doc_id"] for p in answer["passages"]}
    assert http.delete("/v1/documents/live-nhatrang").json()["error"]["code"] == "not_found"


def _chunked(total: int) -> Iterator[bytes]:
    while total > 0:
        yield b" " * min(65536, total)
        total -= 65536


@pytest.mark.parametrize(
    "kwargs",
    [
        {"content": b" " * 2_000_000, "headers": {"content-type": "application/json"}},
        {"content": _chunked(3_000_000), "headers": {"content-type": "application/json"}},
        {"files": {"file": ("big.txt", b"a" * 2_000_000)}},
    ],
    ids=["content-length", "chunked", "upload"],
)
def test_body_too_large(http: httpx.Client, live: LiveServer, kwargs: dict[str, Any]) -> None:
    path = "/v1/documents" if "files" in kwargs else "/v1/ask"
    response = http.post(path, **kwargs)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert not list(live.settings.corpus_dir.glob("big*"))
    assert http.get("/healthz").status_code == 200


def test_a_slow_question_does_not_block_the_server(
    http: httpx.Client, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = live.engine.ask

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.5)
        return original(*args, **kwargs)

    monkeypatch.setattr(live.engine, "ask", slow)
    results: list[int] = []
    worker = threading.Thread(
        target=lambda: results.append(http.post("/v1/ask", json={"question": QUESTION}).status_code)
    )
    worker.start()
    time.sleep(0.2)
    started = time.monotonic()
    with httpx.Client(base_url=live.base, timeout=10) as other:
        assert other.get("/healthz").status_code == 200
        assert other.get("/v1/documents").status_code == 200
    assert time.monotonic() - started < 1.0
    worker.join(20)
    assert results == [200]
