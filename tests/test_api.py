"""The HTTP service through FastAPI's TestClient: answers, documents, auth, start-up and bad input."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qa.api.app import create_app
from qa.config import Settings
from qa.engine import Engine
from qa.errors import ModelError, VectorStoreError
from tests.conftest import settings_in

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"

HCMC = "000_a2194725df4ab5f6"  # 胡志明市 … 8个友好合作城市 (2025-01-21)
TRADE = "001_53bd41b2b23f3bca"  # 2024年前11月双边贸易金额 (2025-01-10)
HANOI = "003_de8d194c5a4a5bf1"  # undated
QUESTION = "胡志明市与中国多少个城市建立了友好合作关系？"
NEW_FACT = "芽庄市与昆明市签署友好城市协议"
NEW_TEXT = (
    "芽庄市与昆明市签署友好城市协议\n\n"
    "3月5日,芽庄市与昆明市在芽庄签署友好城市协议,双方将开通直航航线,并在旅游、教育和农业领域开展合作。\n"
)


def source_text(corpus: Path, doc_id: str) -> str:
    """An article's source as the scorer reads it."""
    with open(corpus / f"{doc_id}.txt", encoding="utf-8") as handle:
        return handle.read()


def make_settings(root: Path, **sections: dict[str, Any]) -> Settings:
    """Settings over a fresh copy of the seeds in ``root``, the fake encoder and an index in ``root``."""
    return settings_in(root, **sections)


class Service:
    """One app over its own corpus copy and index, with an open engine and a TestClient."""

    def __init__(self, root: Path, **sections: dict[str, Any]) -> None:
        self.settings = make_settings(root, **sections)
        self.corpus = self.settings.corpus_dir
        self.engine = Engine(self.settings).open(sync=True, show_progress=False)
        self.client = TestClient(create_app(self.settings, self.engine))


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """For tests that change nothing: built once per module."""
    service = Service(tmp_path_factory.mktemp("shared"))
    with service.client:
        yield service


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Service]:
    """For tests that add or delete articles."""
    service = Service(tmp_path)
    with service.client:
        yield service


@pytest.fixture
def client(shared: Service) -> TestClient:
    return shared.client


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings over a fresh corpus copy, for tests that build their own app."""
    return make_settings(tmp_path)


def ask(client: TestClient, question: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/ask", json={"question": question, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def cited_docs(answer: dict[str, Any]) -> set[str]:
    return {p["doc_id"] for p in answer["passages"]}


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    error: dict[str, Any] = body["error"]
    return error


# -- questions -------------------------------------------------------------------------------------


def test_ask_cites_verbatim_passages(shared: Service) -> None:
    client = shared.client
    answer = ask(client, QUESTION, top_k=3)
    assert answer["question"] == QUESTION
    assert answer["answerable"] is True and answer["reason"] is None
    assert 1 <= len(answer["passages"]) <= 3
    assert "[1]" in answer["answer"]
    for rank, passage in enumerate(answer["passages"], start=1):
        assert passage["rank"] == rank
        source = source_text(shared.corpus, passage["doc_id"])
        assert source[passage["start"] : passage["end"]] == passage["text"]
        assert 0 <= passage["highlight"]["start"] < passage["highlight"]["end"] <= len(passage["text"])
        assert passage["section"] in {"body", "related"}
    assert answer["passages"][0]["doc_id"] == HCMC
    assert "8" in answer["passages"][0]["text"]


def test_ask_default_top_k_comes_from_settings(shared: Service) -> None:
    answer = ask(shared.client, QUESTION)
    assert len(answer["passages"]) == shared.settings.retrieval.top_k


def test_question_about_japan_abstains(client: TestClient) -> None:
    answer = ask(client, "日本与越南的贸易额是多少？")
    assert answer["answerable"] is False
    assert answer["passages"] == []
    assert "日本" in answer["reason"]
    assert "[1]" not in answer["answer"]


def test_history_passes_only_earlier_user_turns(shared: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    client, engine = shared.client, shared.engine
    seen: list[list[str]] = []
    original = engine.ask

    def spy(question: str, **kwargs: Any) -> Any:
        seen.append(list(kwargs["history"]))
        return original(question, **kwargs)

    monkeypatch.setattr(engine, "ask", spy)
    history = [
        {"role": "user", "content": "胡志明市与中国的合作情况如何？"},
        {"role": "assistant", "content": "日本日本日本"},
        {"role": "system", "content": "ignored"},
    ]
    answer = ask(client, "那里有多少个有效的中国投资项目？", history=history)
    assert seen == [["胡志明市与中国的合作情况如何？"]]
    assert HCMC in cited_docs(answer)


def test_filters_by_date_and_doc_id(client: TestClient) -> None:
    recent = ask(client, "胡志明市与中国的合作", filters={"date_from": "2025-01-15"})
    assert recent["passages"] and cited_docs(recent) == {HCMC}
    older = ask(client, "越中关系", filters={"date_to": "2025-01-10"})
    assert older["passages"] and all(p["date"] <= "2025-01-10" for p in older["passages"])
    only = ask(client, "越中关系", filters={"doc_ids": [HANOI]})
    assert only["passages"] and cited_docs(only) == {HANOI}


def test_unknown_doc_ids_in_filters_match_nothing(client: TestClient) -> None:
    answer = ask(client, QUESTION, filters={"doc_ids": ["nope", "../etc/passwd"]})
    assert answer["answerable"] is False and answer["passages"] == []


# -- chat (OpenAI-compatible) ----------------------------------------------------------------------


def test_chat_completion_with_citations(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions",
        json={
            "model": "zh-news-qa",
            "messages": [{"role": "system", "content": "你是助手"}, {"role": "user", "content": QUESTION}],
            "temperature": 0.3,
            "max_tokens": 100,
            "n": 1,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "zh-news-qa"
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    assert "[1]" in choice["message"]["content"]
    assert body["citations"] and body["citations"][0]["doc_id"] == HCMC
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert choice["message"]["content"] == ask(client, QUESTION)["answer"]


def test_chat_uses_earlier_user_messages_as_history(shared: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    client, engine = shared.client, shared.engine
    calls: list[tuple[str, list[str]]] = []
    original = engine.ask

    def spy(question: str, **kwargs: Any) -> Any:
        calls.append((question, list(kwargs["history"])))
        return original(question, **kwargs)

    monkeypatch.setattr(engine, "ask", spy)
    messages = [
        {"role": "user", "content": "胡志明市与中国的合作情况如何？"},
        {"role": "assistant", "content": "……"},
        {"role": "user", "content": [{"type": "text", "text": "那里有多少个有效的中国投资项目？"}]},
    ]
    response = client.post("/v1/chat/completions", json={"model": "m", "messages": messages})
    assert response.status_code == 200, response.text
    assert calls == [("那里有多少个有效的中国投资项目？", ["胡志明市与中国的合作情况如何？"])]


def sse_events(text: str) -> list[str]:
    return [line[len("data:") :].strip() for line in text.splitlines() if line.startswith("data:")]


def test_chat_streaming_events(client: TestClient) -> None:
    import json

    payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    with client.stream("POST", "/v1/chat/completions", json=payload) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode("utf-8")
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices[-1]["choices"][0]["finish_reason"] == "stop"
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in with_choices)
    assert content == ask(client, QUESTION)["answer"]
    citation_chunks = [c for c in chunks if "citations" in c]
    assert len(citation_chunks) == 1 and citation_chunks[0]["choices"] == []
    assert citation_chunks[0]["citations"][0]["doc_id"] == HCMC
    assert chunks[-1] is citation_chunks[0]


def test_models_list(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list" and body["data"][0]["id"]


# -- documents -------------------------------------------------------------------------------------


def test_list_and_read_documents(shared: Service) -> None:
    client = shared.client
    page = client.get("/v1/documents").json()
    assert page["total"] == 5 and len(page["items"]) == 5
    first = page["items"][0]
    assert first["doc_id"] == HCMC and first["date"] == "2025-01-21" and first["passages"] > 0
    assert sum(first["sections"].values()) == first["passages"]
    second_page = client.get("/v1/documents", params={"offset": 3, "limit": 10}).json()
    assert [i["doc_id"] for i in second_page["items"]] == [i["doc_id"] for i in page["items"][3:]]

    detail = client.get(f"/v1/documents/{HCMC}").json()
    assert detail["text"] == source_text(shared.corpus, HCMC)
    assert detail["segments"] and all(
        0 <= s["start"] < s["end"] <= len(detail["text"]) for s in detail["segments"]
    )
    passage = ask(client, QUESTION)["passages"][0]
    assert detail["text"][passage["start"] : passage["end"]] == passage["text"]


def test_add_replace_delete_document(fresh: Service) -> None:
    client, api_corpus = fresh.client, fresh.corpus
    assert NEW_FACT not in str(ask(client, "芽庄市与昆明市签署了什么协议？"))

    created = client.post("/v1/documents", json={"doc_id": "nhatrang-kunming", "text": NEW_TEXT})
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v1/documents/nhatrang-kunming"
    summary = created.json()
    assert (
        summary["doc_id"] == "nhatrang-kunming" and summary["replaced"] is False and summary["passages"] >= 1
    )
    assert (api_corpus / "nhatrang-kunming.txt").is_file()  # durable: in the corpus folder

    answer = ask(client, "芽庄市与昆明市签署了什么协议？")
    assert answer["answerable"] and answer["passages"][0]["doc_id"] == "nhatrang-kunming"
    stored = source_text(api_corpus, "nhatrang-kunming")
    assert (
        stored[answer["passages"][0]["start"] : answer["passages"][0]["end"]] == answer["passages"][0]["text"]
    )

    # a fresh engine over the same folders sees it too
    assert "nhatrang-kunming" in Engine(fresh.settings).open(show_progress=False).index.articles

    replaced = client.post(
        "/v1/documents",
        json={
            "doc_id": "nhatrang-kunming",
            "title": "芽庄市与成都市开通直航",
            "date": "2025-03-06",
            "text": "3月6日,芽庄市与成都市之间的直航航线正式开通,每周运营四个航班。",
            "url": "https://example.com/n/1",
        },
    )
    assert replaced.status_code == 201, replaced.text
    assert replaced.json()["replaced"] is True and replaced.json()["date"] == "2025-03-06"
    detail = client.get("/v1/documents/nhatrang-kunming").json()
    assert "成都市" in detail["text"] and "昆明市" not in detail["text"]
    assert detail["url"] == "https://example.com/n/1" and detail["title"] == "芽庄市与成都市开通直航"
    flights = ask(client, "芽庄市与成都市之间的直航每周有几个航班？")
    assert "nhatrang-kunming" in cited_docs(flights)
    cited = [p for p in flights["passages"] if p["doc_id"] == "nhatrang-kunming"]
    assert cited[0]["url"] == "https://example.com/n/1"
    assert all(p["url"] is None for p in flights["passages"] if p["doc_id"] != "nhatrang-kunming")
    assert client.get("/v1/documents").json()["total"] == 6

    deleted = client.delete("/v1/documents/nhatrang-kunming")
    assert deleted.status_code == 204 and deleted.content == b""
    for question in ("芽庄市与成都市之间的直航每周有几个航班？", "芽庄市与昆明市签署了什么协议？"):
        assert "nhatrang-kunming" not in cited_docs(ask(client, question, top_k=50))
    assert_error(client.get("/v1/documents/nhatrang-kunming"), 404, "not_found")
    assert_error(client.delete("/v1/documents/nhatrang-kunming"), 404, "not_found")
    assert not list(api_corpus.glob("nhatrang-kunming.*"))
    assert client.get("/v1/documents").json()["total"] == 5


def test_upload_document_file(fresh: Service) -> None:
    client = fresh.client
    raw = NEW_TEXT.encode("utf-8")
    response = client.post("/v1/documents", files={"file": ("nhatrang.txt", raw, "text/plain")})
    assert response.status_code == 201, response.text
    assert response.json()["doc_id"] == "nhatrang"
    named = client.post(
        "/v1/documents", files={"file": ("x.md", raw, "text/markdown")}, data={"doc_id": "named-upload"}
    )
    assert named.status_code == 201, named.text
    assert named.json()["doc_id"] == "named-upload"
    # Both are stored; the same text twice is one story, cited once (qa/retrieval/copies.py).
    assert {"nhatrang", "named-upload"} <= {d["doc_id"] for d in client.get("/v1/documents").json()["items"]}
    cited = cited_docs(ask(client, "芽庄市与昆明市签署了什么协议？", top_k=10))
    assert len(cited & {"nhatrang", "named-upload"}) == 1


def test_chinese_doc_id(fresh: Service) -> None:
    client = fresh.client
    created = client.post("/v1/documents", json={"doc_id": "芽庄新闻", "text": NEW_TEXT})
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v1/documents/%E8%8A%BD%E5%BA%84%E6%96%B0%E9%97%BB"
    assert client.get(created.headers["location"]).json()["doc_id"] == "芽庄新闻"
    assert "芽庄新闻" in cited_docs(ask(client, "芽庄市与昆明市签署了什么协议？"))
    assert client.delete("/v1/documents/芽庄新闻").status_code == 204
    assert_error(client.get("/v1/documents/芽庄新闻"), 404, "not_found")


def test_delete_seed_article_is_never_cited_again(fresh: Service) -> None:
    client = fresh.client
    assert HCMC in cited_docs(ask(client, QUESTION))
    assert client.delete(f"/v1/documents/{HCMC}").status_code == 204
    for question in (QUESTION, "胡志明市的中国投资项目", "越中建交75周年"):
        assert HCMC not in cited_docs(ask(client, question, top_k=50))


# -- authentication --------------------------------------------------------------------------------


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Service]:
    service = Service(tmp_path, server={"api_keys": ["key-one", "key-two"]})
    with service.client:
        yield service


def test_api_keys_guard_every_v1_route(secured: Service) -> None:
    client, api_corpus = secured.client, secured.corpus
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/v1/ask", {"json": {"question": QUESTION}}),
        (
            "POST",
            "/v1/chat/completions",
            {"json": {"model": "m", "messages": [{"role": "user", "content": "x"}]}},
        ),
        ("GET", "/v1/models", {}),
        ("GET", "/v1/documents", {}),
        ("GET", f"/v1/documents/{HCMC}", {}),
        ("POST", "/v1/documents", {"json": {"doc_id": "intruder", "text": NEW_TEXT}}),
        ("POST", "/v1/documents", {"files": {"file": ("intruder.txt", NEW_TEXT.encode())}}),
        ("DELETE", f"/v1/documents/{HCMC}", {}),
        ("POST", "/v1/ask", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    ]
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer key-one-and-more"},
        {"Authorization": "Basic a2V5LW9uZTp4"},
        {"Authorization": "key-one"},
        {"Authorization": "Bearer "},
    ]
    for method, path, kwargs in calls:
        for headers in bad_headers:
            extra = {**kwargs.get("headers", {}), **headers}
            response = client.request(method, path, **{**kwargs, "headers": extra})
            assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")
    # nothing was indexed or deleted
    assert not list(api_corpus.glob("intruder*"))
    page = client.get("/v1/documents", headers={"Authorization": "Bearer key-two"}).json()
    assert page["total"] == 5 and HCMC in {i["doc_id"] for i in page["items"]}

    for key in ("key-one", "key-two"):
        response = client.post(
            "/v1/ask", json={"question": QUESTION}, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200, response.text
    lower = client.get("/v1/models", headers={"authorization": "bearer key-one"})
    assert lower.status_code == 200


def test_open_routes_need_no_key(secured: Service) -> None:
    client = secured.client
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert client.get("/").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "ApiKey" in schema["components"]["securitySchemes"]
    assert schema["paths"]["/v1/ask"]["post"]["security"] == [{"ApiKey": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]


def test_no_keys_means_no_auth(client: TestClient) -> None:
    assert client.get("/v1/documents").status_code == 200
    assert "security" not in client.get("/openapi.json").json()["paths"]["/v1/ask"]["post"]


# -- health, start-up, web page, schema -----------------------------------------------------------


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "articles": 5,
        "passages": ready.json()["passages"],
        "model": "fake:64",
    }
    assert ready.json()["passages"] > 5


def wait_ready(client: TestClient, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        response = client.get("/readyz")
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_not_ready_until_the_index_is_loaded(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine(settings)
    gate = threading.Event()
    original = engine.open

    def slow_open(**kwargs: Any) -> Engine:
        assert kwargs.get("sync") is True
        gate.wait(30)
        return original(**kwargs)

    monkeypatch.setattr(engine, "open", slow_open)
    with TestClient(create_app(settings, engine)) as client:
        assert client.get("/healthz").status_code == 200
        assert_error(client.get("/readyz"), 503, "not_ready")
        response = client.post("/v1/ask", json={"question": QUESTION})
        assert_error(response, 503, "not_ready")
        assert response.headers["retry-after"]
        assert_error(client.get("/v1/documents"), 503, "not_ready")
        gate.set()
        assert wait_ready(client).status_code == 200
        assert ask(client, QUESTION)["answerable"]


def test_app_creates_and_opens_its_own_engine(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        ready = wait_ready(client)
        assert ready.status_code == 200, ready.text
        assert ready.json()["articles"] == 5
        assert ask(client, QUESTION)["answerable"]


@pytest.mark.parametrize("warm", [True, False])
def test_the_dictionary_is_read_in_the_background_once_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warm: bool
) -> None:
    """Not by a worker's first English question (and the questions queued behind it), unless turned off."""
    import qa.api.startup
    from qa.retrieval.dictionary import EnglishChinese

    cedict = tmp_path / "cedict.txt"
    cedict.write_text("海滩 海滩 [hai3 tan1] /beach/\n", encoding="utf-8")
    dictionary = EnglishChinese(cedict)
    monkeypatch.setattr(qa.api.startup, "shared_dictionary", lambda: dictionary)
    settings = make_settings(tmp_path / "service", server={"warm_dictionary": warm})
    with TestClient(create_app(settings)) as client:
        assert wait_ready(client).status_code == 200
        deadline = time.monotonic() + 10
        while warm and dictionary._senses is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert (dictionary._senses == {"beach": ["海滩"]}) if warm else dictionary._senses is None


def test_the_tokenizer_is_loaded_in_the_background_once_ready(tmp_path: Path) -> None:
    """jieba's dictionary and tagger, which every question needs: not by a worker's first question (with
    the questions queued behind it waiting too)."""
    settings = make_settings(tmp_path / "service", server={"warm_dictionary": False})
    Engine(settings).open(show_progress=False)  # built beforehand: opening it needs no tokenizer
    engine = Engine(settings)
    assert not engine.tokenizer._ready
    with TestClient(create_app(settings, engine)) as client:
        assert wait_ready(client).status_code == 200
        deadline = time.monotonic() + 30
        while not engine.tokenizer._ready:
            assert time.monotonic() < deadline, "the tokenizer was not loaded after start-up"
            time.sleep(0.02)


def test_start_up_failure_is_reported_by_readyz(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine(settings)

    def broken(**kwargs: Any) -> Engine:
        raise ModelError("cannot build the model")

    monkeypatch.setattr(engine, "open", broken)
    with TestClient(create_app(settings, engine)) as client:
        deadline = time.monotonic() + 10
        while client.get("/readyz").json()["error"]["code"] != "startup_failed":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        error = assert_error(client.get("/readyz"), 503, "startup_failed")
        assert "embedding model is not available" in error["message"]  # the detail is in the log only
        assert "cannot build the model" not in error["message"]
        assert client.get("/healthz").status_code == 200
        assert_error(client.post("/v1/ask", json={"question": QUESTION}), 503, "index_unavailable")


@pytest.mark.parametrize(
    ("error", "code", "public"),
    [
        (ModelError("cannot load /secret/model"), "model_unavailable", "embedding model is not available"),
        (
            VectorStoreError("Milvus at /secret/milvus.db failed"),
            "index_unavailable",
            "index is not available",
        ),
    ],
)
def test_errors_of_the_embeddings_layer_are_translated(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, error: Exception, code: str, public: str
) -> None:
    """embeddings/ has its own error tree (not QAError): the HTTP edge translates it all the same."""
    engine = Engine(settings).open(show_progress=False)

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(engine, "ask", failing)
    with TestClient(create_app(settings, engine)) as client:
        wait_ready(client)
        response = client.post("/v1/ask", json={"question": QUESTION})
        body = assert_error(response, 503, code)
        assert public in body["message"] and "/secret" not in body["message"]
        assert response.headers.get("Retry-After") == ("5" if code == "index_unavailable" else None)


def test_web_page(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()


def test_web_page_is_the_static_index_when_installed(client: TestClient) -> None:
    page = ROOT / "qa" / "static" / "index.html"
    if not page.is_file():
        pytest.skip("qa/static/index.html is not installed")
    assert client.get("/").content == page.read_bytes()


def test_web_page_placeholder_without_static_folder(tmp_path: Path) -> None:
    from fastapi import FastAPI

    from qa.api.web import mount_web

    app = FastAPI()
    mount_web(app, tmp_path / "missing")
    with TestClient(app) as client:
        response = client.get("/")
        assert response.status_code == 200 and "/docs" in response.text
        assert client.get("/static/app.js").status_code == 404


def test_telegram_router_mounted_only_when_enabled(settings: Settings, tmp_path: Path) -> None:
    pytest.importorskip("qa.bot.telegram")
    path = "/telegram/webhook"
    off = create_app(settings)
    assert path not in off.openapi()["paths"]
    with TestClient(off) as client:
        assert client.post(path, json={"update_id": 1}).status_code in (404, 405)
    enabled = make_settings(tmp_path, telegram={"enabled": True, "secret_token": "t0ken", "bot_token": "1:x"})
    with TestClient(create_app(enabled)) as client:
        response = client.post(path, json={"update_id": 1})  # no secret header: refused by the adapter
        assert response.status_code not in (404, 405) and response.status_code < 500


def test_telegram_enabled_without_adapter_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from qa.errors import ConfigError

    monkeypatch.setitem(sys.modules, "qa.bot.telegram", None)
    enabled = make_settings(tmp_path, telegram={"enabled": True, "secret_token": "t0ken"})
    with pytest.raises(ConfigError, match=r"qa\.bot\.telegram"):
        create_app(enabled)


def test_openapi_documents_every_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    expected = {
        ("post", "/v1/ask"),
        ("post", "/v1/chat/completions"),
        ("get", "/v1/models"),
        ("get", "/v1/documents"),
        ("post", "/v1/documents"),
        ("get", "/v1/documents/{doc_id}"),
        ("delete", "/v1/documents/{doc_id}"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/"),
    }
    found = {(m, p) for p, ops in schema["paths"].items() for m in ops}
    assert expected <= found
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            assert op.get("summary") and op.get("tags"), (method, path)
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorResponse"), (method, path, status)
    upload = schema["paths"]["/v1/documents"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(upload)
    ask_body = schema["components"]["schemas"]["AskRequest"]
    assert ask_body.get("examples") and ask_body["properties"]["question"].get("description")
    assert client.get("/docs").status_code == 200


def test_unexpected_errors_are_generic_json(shared: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(shared.engine, "ask", boom)
    app = create_app(shared.settings, shared.engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        error = assert_error(client.post("/v1/ask", json={"question": QUESTION}), 500, "internal_error")
        assert "secret" not in error["message"]


# -- schema examples ------------------------------------------------------------------------------
# (bad input: tests/test_bad_input.py)


def test_schema_examples_are_valid() -> None:
    from pydantic import BaseModel

    from qa.api import schemas

    models = [
        m
        for m in vars(schemas).values()
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == schemas.__name__
    ]
    checked = 0
    for model in models:
        for example in model.model_json_schema().get("examples", []):
            model.model_validate(example)
            checked += 1
    assert checked >= 10
