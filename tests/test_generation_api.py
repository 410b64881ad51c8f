"""What a user receives from a written answer (generation.backend = "openai", a scripted stub server)
through POST /v1/ask, chat completions (whole and streamed) and the `qa` command."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qa.api.app import create_app
from qa.engine import Engine
from qa.generation import metrics
from tests.conftest import fake_config_text, run_qa, settings_in
from tests.openai_stub import OpenAIStub
from tests.test_generation import BAD_NUMBER, GOOD_1, GOOD_2, NO_MARKER, OUT_OF_RANGE, QUESTION

ABSTAINS = "越南与日本的贸易额是多少?"


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as server:
        yield server


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, stub: OpenAIStub
) -> Iterator[tuple[TestClient, Engine]]:
    generation = {"backend": "openai", "base_url": stub.base_url, "model": "stub-model", "timeout_s": 2.0}
    settings = settings_in(tmp_path_factory.mktemp("gen"), generation=generation)
    engine = Engine(settings).open(sync=True, show_progress=False)
    with TestClient(create_app(settings, engine)) as client:
        yield client, engine


@pytest.fixture
def client(service: tuple[TestClient, Engine], stub: OpenAIStub) -> TestClient:
    stub.requests.clear()
    metrics.reset()
    return service[0]


def extractive(service: tuple[TestClient, Engine]) -> str:
    return service[1].ask(QUESTION, top_k=3, write=False).text


def ask(client: TestClient, question: str = QUESTION) -> dict[str, Any]:
    response = client.post("/v1/ask", json={"question": question, "top_k": 3})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def chat(client: TestClient, question: str = QUESTION) -> dict[str, Any]:
    payload = {"model": "m", "messages": [{"role": "user", "content": question}], "top_k": 3}
    response = client.post("/v1/chat/completions", json=payload)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def streamed(client: TestClient, question: str = QUESTION) -> tuple[list[str], dict[str, Any]]:
    """The content deltas, and the last chunk (citations, generation)."""
    payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": question}], "top_k": 3}
    with client.stream("POST", "/v1/chat/completions", json=payload) as response:
        assert response.status_code == 200
        text = response.read().decode("utf-8")
    events = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c for c in chunks if c["choices"]][-1]["choices"][0]["finish_reason"] == "stop"
    pieces = [
        c["choices"][0]["delta"]["content"]
        for c in chunks
        if c["choices"] and c["choices"][0]["delta"].get("content")
    ]
    assert chunks[-1]["choices"] == [] and "citations" in chunks[-1]
    return pieces, chunks[-1]


REPLY = f"{GOOD_1}{BAD_NUMBER}{NO_MARKER}{OUT_OF_RANGE}{GOOD_2}"
REMOVED = [
    {"sentence": BAD_NUMBER, "reason": "number 9.9 is not in [1]"},
    {"sentence": NO_MARKER, "reason": "no citation marker"},
    {"sentence": OUT_OF_RANGE, "reason": "cites [7], but there are 3 passages"},
]


def test_ask_gives_the_checked_sentences_and_lists_the_removed(client: TestClient, stub: OpenAIStub) -> None:
    stub.script(REPLY)
    body = ask(client)
    assert body["answer"] == f"{GOOD_1}\n{GOOD_2}"
    assert body["generation"] == {"model": "stub-model", "removed": REMOVED, "fallback": False, "error": None}
    assert len(body["passages"]) == 3 and body["answerable"] is True
    for number in (int(n) for n in re.findall(r"\[(\d+)\]", body["answer"])):
        assert body["passages"][number - 1]["rank"] == number


def test_chat_completion_carries_the_report(client: TestClient, stub: OpenAIStub) -> None:
    stub.script(REPLY)
    body = chat(client)
    assert body["choices"][0]["message"]["content"] == f"{GOOD_1}\n{GOOD_2}"
    assert body["generation"]["removed"] == REMOVED and body["citations"][0]["rank"] == 1


def test_streamed_chat_never_shows_a_removed_sentence(client: TestClient, stub: OpenAIStub) -> None:
    stub.script(REPLY, piece=2)
    pieces, last = streamed(client)
    assert pieces == [GOOD_1, f"\n{GOOD_2}"]
    assert stub.requests[-1]["body"]["stream"] is True
    assert last["generation"]["removed"] == REMOVED and not last["generation"]["fallback"]
    assert len(last["citations"]) == 3


@pytest.mark.parametrize(
    "script", [{"status": 500}, {"delay": 3.0}, {"content": f"{BAD_NUMBER}{NO_MARKER}"}, {"malformed": True}]
)
def test_a_failing_or_unsupported_reply_gives_the_extractive_answer(
    client: TestClient, stub: OpenAIStub, service: tuple[TestClient, Engine], script: dict[str, Any]
) -> None:
    stub.script(**script)
    text = extractive(service)
    body = ask(client)
    assert body["answer"] == text and body["generation"]["fallback"] is True
    assert chat(client)["choices"][0]["message"]["content"] == text
    pieces, last = streamed(client)
    assert "".join(pieces) == text and last["generation"]["fallback"] is True
    if "content" not in script:
        assert body["generation"]["error"] and body["generation"]["removed"] == []
        assert metrics.generation_counters()["upstream_failures"] == 3


def test_abstention_never_asks_the_model(client: TestClient, stub: OpenAIStub) -> None:
    stub.script(GOOD_1)
    body = ask(client, ABSTAINS)
    assert body["answerable"] is False and body["generation"] is None
    assert chat(client, ABSTAINS).get("generation") is None
    pieces, last = streamed(client, ABSTAINS)
    assert "".join(pieces) == body["answer"] and "generation" not in last
    assert stub.requests == []


def ask_events(client: TestClient, question: str = QUESTION) -> list[tuple[str, Any]]:
    payload = {"question": question, "top_k": 3}
    headers = {"Accept": "text/event-stream, application/json"}  # what the web page sends
    with client.stream("POST", "/v1/ask", json=payload, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode("utf-8")
    events: list[tuple[str, Any]] = []
    name = ""
    for line in text.splitlines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[len("data: ") :])))
    return events


def test_ask_streams_checked_sentences_to_the_web_page(client: TestClient, stub: OpenAIStub) -> None:
    stub.script(REPLY, piece=2)
    events = ask_events(client)
    assert [name for name, _ in events] == ["start", "delta", "delta", "answer"]
    start, final = events[0][1], events[-1][1]
    assert len(start["passages"]) == 3 and start["answerable"] is True
    assert [data["text"] for name, data in events if name == "delta"] == [GOOD_1, f"\n{GOOD_2}"]
    assert final["answer"] == f"{GOOD_1}\n{GOOD_2}" and final["generation"]["removed"] == REMOVED
    assert final["passages"] == start["passages"]


def test_streamed_ask_falls_back_and_abstains_like_json(
    client: TestClient, stub: OpenAIStub, service: tuple[TestClient, Engine]
) -> None:
    stub.script(status=500)
    events = ask_events(client)
    assert [name for name, _ in events] == ["start", "delta", "answer"]
    assert events[1][1]["text"] == extractive(service) == events[-1][1]["answer"]
    assert events[-1][1]["generation"]["error"] == "status_500"
    stub.requests.clear()
    events = ask_events(client, ABSTAINS)
    assert [name for name, _ in events] == ["answer"] and events[0][1]["answerable"] is False
    assert stub.requests == []
    response = client.post("/v1/ask", json={"question": " "}, headers={"Accept": "text/event-stream"})
    assert response.status_code == 422 and response.json()["error"]["code"]


def test_extractive_service_answers_json_whatever_the_client_accepts(
    tmp_path: Path,
) -> None:
    settings = settings_in(tmp_path)
    with TestClient(create_app(settings, Engine(settings).open(show_progress=False))) as client:
        headers = {"Accept": "text/event-stream, application/json"}
        response = client.post("/v1/ask", json={"question": QUESTION}, headers=headers)
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["generation"] is None


def test_openapi_documents_the_report(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"model", "removed", "fallback"} <= set(schemas["GenerationOut"]["properties"])
    assert "generation" in schemas["AskResponse"]["properties"]


# -- the command line --------------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path, corpus_dir: Path, stub: OpenAIStub) -> Path:
    text = fake_config_text(tmp_path, corpus_dir)
    text = re.sub(r'(?m)^backend = "extractive"', 'backend = "openai"', text, count=1)
    text = re.sub(r'(?m)^base_url = ".*?"', f'base_url = "{stub.base_url}"', text, count=1)
    text = re.sub(r"(?m)^timeout_s = .*$", "timeout_s = 2.0", text, count=1)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_cli_json_reports_generation(config: Path, stub: OpenAIStub) -> None:
    stub.script(REPLY)
    result = run_qa(config, "ask", QUESTION, "--json", "--top-k", "3")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["answer"] == f"{GOOD_1}\n{GOOD_2}"
    assert (
        answer["generation"]["model"] == "qwen2.5:7b-instruct" and answer["generation"]["removed"] == REMOVED
    )


def test_cli_prints_checked_sentences_and_what_was_removed(config: Path, stub: OpenAIStub) -> None:
    stub.script(REPLY, piece=4)
    result = run_qa(config, "ask", QUESTION, "--top-k", "3")
    assert result.returncode == 0, result.stderr
    assert GOOD_1 in result.stdout and GOOD_2 in result.stdout
    assert all(r["sentence"] not in result.stdout for r in REMOVED)  # never shown, only why
    assert "3 written sentence(s) removed" in result.stdout and "number 9.9 is not in [1]" in result.stdout
    assert "[1]" in result.stdout and "000_a2194725df4ab5f6:" in result.stdout  # the passages follow


def test_cli_falls_back_when_the_server_fails(config: Path, stub: OpenAIStub) -> None:
    stub.script(status=500)
    result = run_qa(config, "ask", QUESTION, "--json", "--top-k", "3")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["generation"]["fallback"] is True and answer["generation"]["error"] == "status_500"
    assert "[1]" in answer["answer"]
    assert "giving the extractive answer" in result.stderr  # the log line
