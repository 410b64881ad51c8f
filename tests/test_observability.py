"""Operations: GET /metrics (Prometheus, one process and several), request ids in responses and in every
log line of a request, text and JSON logs."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from qa import logs, metrics
from qa.api.app import create_app
from qa.api.request_id import HEADER, MAX_LENGTH
from qa.config import Settings
from qa.embeddings.encoder import FakeEncoder
from qa.embeddings.query_batch import BatchingQueryEncoder
from qa.engine import Engine
from tests.conftest import ROOT

QUESTION = "胡志明市与中国多少个地方保持友好合作关系?"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, by name and labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def service(fake_settings: Settings) -> Iterator[tuple[TestClient, Engine]]:
    engine = Engine(fake_settings).open(show_progress=False)
    with TestClient(create_app(fake_settings, engine)) as client:
        yield client, engine


def test_metrics_count_questions_abstentions_http_and_index_size(
    service: tuple[TestClient, Engine],
) -> None:
    client, _engine = service
    before = client.get("/metrics").text
    assert client.post("/v1/ask", json={"question": QUESTION}).status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    asked = value(text, "qa_questions_total", outcome="answered") + value(
        text, "qa_questions_total", outcome="abstained"
    )
    asked_before = value(before, "qa_questions_total", outcome="answered") + value(
        before, "qa_questions_total", outcome="abstained"
    )
    assert asked == asked_before + 1
    assert value(text, "qa_retrieval_seconds_count") == value(before, "qa_retrieval_seconds_count") + 1
    assert value(text, "qa_index_articles") == 5
    assert value(text, "qa_index_passages") > 5
    assert value(text, "qa_index_segments") >= 1
    # HTTP metrics by route template, from prometheus-fastapi-instrumentator
    assert value(text, "http_requests_total", handler="/v1/ask", method="POST", status="2xx") >= 1
    for name in ("qa_feed_polls_total", "qa_generation_fallbacks_total", "qa_index_writes_total"):
        assert f"# TYPE {name} counter" in text


def test_writes_are_counted(service: tuple[TestClient, Engine]) -> None:
    client, _engine = service
    before = client.get("/metrics").text
    created = client.post(
        "/v1/documents",
        json={
            "doc_id": "ops-note",
            "title": "运维说明",
            "text": "胡志明市是越南最大的城市，人口超过九百万。" * 3,
        },
    )
    assert created.status_code == 201
    assert client.delete("/v1/documents/ops-note").status_code == 204
    after = client.get("/metrics").text
    for kind in ("add", "delete"):
        assert (
            value(after, "qa_index_writes_total", kind=kind)
            == value(before, "qa_index_writes_total", kind=kind) + 1
        )


def test_metrics_are_protected_like_the_read_routes(make_settings: Any) -> None:
    settings = make_settings(
        server={"allowed_hosts": ["testserver"], "api_keys": ["full"], "read_keys": ["ro"]}
    )
    engine = Engine(settings).open(show_progress=False)
    with TestClient(create_app(settings, engine)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer ro"}).status_code == 200
        assert client.get("/metrics", headers={"Authorization": "Bearer full"}).status_code == 200
        assert client.get("/metrics", headers={"Host": "evil.example"}).status_code == 400
        assert client.get("/healthz").status_code == 200  # probes stay open


def test_metrics_can_be_switched_off(make_settings: Any) -> None:
    settings = make_settings(metrics={"enabled": False})
    with TestClient(create_app(settings, Engine(settings).open(show_progress=False))) as client:
        assert client.get("/metrics").status_code == 404


def test_every_abstention_reason_of_the_rules_and_gate_has_a_kind() -> None:
    source = (ROOT / "qa/retrieval/abstain.py").read_text(encoding="utf-8")
    reasons = re.findall(r'(?:Decision\(False, |return )f?"([^"{]+)', source)
    chinese = [r for r in reasons if re.match(r"[\u4e00-\u9fff]", r)]
    assert len(chinese) >= 6
    for reason in chinese:
        assert metrics.abstention_reason(reason) != "other", reason
    assert metrics.abstention_reason("something new") == "other"


def test_free_text_labels_are_bounded() -> None:
    assert metrics.label("Timeout") == "timeout"
    assert metrics.label("new-articles") == "new_articles"
    assert metrics.label("a\nlong; free text " * 5) == "other"
    with pytest.raises(ValueError, match="unknown index write kind"):
        metrics.record_write("rewrite")


def test_feed_polls_and_generation_fallbacks_are_recorded() -> None:
    before = metrics.exposition()[0].decode()
    metrics.record_feed_poll("new")
    metrics.record_generation_fallback("timeout")
    after = metrics.exposition()[0].decode()
    assert (
        value(after, "qa_feed_polls_total", outcome="new")
        == value(before, "qa_feed_polls_total", outcome="new") + 1
    )
    assert (
        value(after, "qa_generation_fallbacks_total", reason="timeout")
        == value(before, "qa_generation_fallbacks_total", reason="timeout") + 1
    )


def test_question_encoding_is_timed_once_per_forward_pass() -> None:
    calls: list[tuple[int, float]] = []
    encoder = BatchingQueryEncoder(FakeEncoder(16), on_encoded=lambda n, s: calls.append((n, s)))
    encoder.encode_queries(["一", "二"])
    encoder.encode_queries(["一"])  # cached: no pass
    assert [n for n, _ in calls] == [2] and calls[0][1] >= 0


_WORKER = """
import sys
from qa import metrics
metrics.record_answer(sys.argv[1] == "yes", "相关度过低（0.10 < 0.80）", 0.02)
metrics.record_index_size(5, 40, 1)
"""


def test_metrics_add_up_across_processes(tmp_path: Path) -> None:
    """prometheus_client's multiprocess mode, as `qa serve --workers N` sets it up."""
    folder = tmp_path / "metrics"
    env = {"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(folder), "PYTHONPATH": str(ROOT)}
    folder.mkdir()
    for answered in ("yes", "no", "no"):
        subprocess.run([sys.executable, "-c", _WORKER, answered], env=env, check=True, cwd=ROOT)
    reader = "from qa import metrics; print(metrics.exposition()[0].decode())"
    text = subprocess.run(
        [sys.executable, "-c", reader], env=env, check=True, cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert value(text, "qa_questions_total", outcome="answered") == 1
    assert value(text, "qa_questions_total", outcome="abstained") == 2
    assert value(text, "qa_abstentions_total", reason="low_similarity") == 2
    assert value(text, "qa_retrieval_seconds_count") == 3
    assert value(text, "qa_index_passages") == 40


def test_prepare_multiprocess_empties_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"old run")
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    metrics.prepare_multiprocess(folder)
    assert list(folder.iterdir()) == [] and metrics.multiprocess_dir() == folder


# -- request ids -------------------------------------------------------------------------------------
def test_a_request_id_is_generated_and_returned(service: tuple[TestClient, Engine]) -> None:
    client, _ = service
    first = client.get("/healthz").headers[HEADER]
    second = client.get("/healthz").headers[HEADER]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second
    # errors too, even those answered before any route (unknown host)
    assert HEADER in client.get("/v1/documents", headers={"Host": "evil.example"}).headers


def test_a_valid_client_request_id_is_kept(service: tuple[TestClient, Engine]) -> None:
    client, _ = service
    for given in (
        "abc-123",
        "0f8e4c1a-9d2b-4c3e-8f7a-6b5d4c3b2a19",
        "trace:4bf92f3577b34da6/00f067aa+=",
        "x" * MAX_LENGTH,
    ):
        assert client.get("/healthz", headers={HEADER: given}).headers[HEADER] == given


@pytest.mark.parametrize(
    "bad", ["x" * (MAX_LENGTH + 1), "two words", "a\tb", "ü-id".encode(), "-leading", "a;b", "<x>"]
)
def test_an_unusable_client_request_id_is_replaced(
    service: tuple[TestClient, Engine], bad: str | bytes
) -> None:
    client, _ = service
    returned = client.get("/healthz", headers={HEADER: bad}).headers[HEADER]
    assert returned != bad and re.fullmatch(r"[0-9a-f]{32}", returned)


def test_every_log_line_of_a_request_carries_its_id(
    service: tuple[TestClient, Engine], log_buffer: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, engine = service
    asked = engine.ask
    inner = logging.getLogger("qa.test.inside")

    def logging_ask(*args: Any, **kwargs: Any) -> Any:  # runs in FastAPI's thread pool
        inner.info("asking inside the route")
        return asked(*args, **kwargs)

    monkeypatch.setattr(engine, "ask", logging_ask)
    response = client.post("/v1/ask", json={"question": QUESTION}, headers={HEADER: "req-42"})
    assert response.status_code == 200 and response.headers[HEADER] == "req-42"
    client.get("/v1/documents", headers={"Host": "evil.example", HEADER: "req-43"})  # logs a warning
    logging.getLogger("qa.test.outside").info("not in a request")
    lines = log_buffer.getvalue().splitlines()
    assert "INFO qa.test.inside [req-42]: asking inside the route" in lines
    assert any("[req-43]" in line and "evil.example" in line for line in lines)
    assert "INFO qa.test.outside: not in a request" in lines


def test_json_log_lines(log_buffer: io.StringIO) -> None:
    stream = io.StringIO()
    logs.configure("INFO", "json", stream)
    token = logs.REQUEST_ID.set("r-1")
    try:
        logging.getLogger("qa.test").warning("hello %s", "世界")
    finally:
        logs.REQUEST_ID.reset(token)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("qa.test").exception("failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "hello 世界" and first["request_id"] == "r-1"
    assert first["level"] == "WARNING" and first["logger"] == "qa.test" and first["time"].endswith("+00:00")
    assert second["request_id"] == "-" and "RuntimeError: boom" in second["exception"]


def test_configure_twice_keeps_one_handler(log_buffer: io.StringIO) -> None:
    logs.configure("DEBUG", "text", io.StringIO())
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_qa_handler", False)]
    assert len(ours) == 1 and logging.getLogger().level == logging.DEBUG


def test_log_settings_are_validated(make_settings: Any) -> None:
    from qa.errors import ConfigError

    with pytest.raises(ConfigError, match=r"log\.format"):
        make_settings(log={"format": "xml"})
    assert make_settings(log={"format": "json"}).log.format == "json"


@pytest.mark.server
def test_qa_serve_with_two_workers_adds_up_their_metrics_and_logs_request_ids(tmp_path: Path) -> None:
    """Real processes: whichever worker answers /metrics reports every worker's questions, and
    uvicorn's access lines carry the request's id."""
    import httpx

    from tests.test_load import ServeProcess, write_config
    from tests.test_workers import every_worker_ready, free_port

    port = free_port()
    server = ServeProcess(write_config(tmp_path), ("--port", str(port), "--workers", "2"))
    server.start()
    base = f"http://127.0.0.1:{port}"
    try:
        every_worker_ready(base)
        for i in range(12):  # new connections: the kernel spreads them over both workers
            with httpx.Client(base_url=base, timeout=30) as fresh:
                reply = fresh.post("/v1/ask", json={"question": QUESTION}, headers={HEADER: f"w-{i}"})
                assert reply.status_code == 200 and reply.headers[HEADER] == f"w-{i}"
        for _ in range(6):
            with httpx.Client(base_url=base, timeout=30) as fresh:
                text = fresh.get("/metrics").text
            asked = value(text, "qa_questions_total", outcome="answered") + value(
                text, "qa_questions_total", outcome="abstained"
            )
            assert asked == 12
            assert value(text, "http_requests_total", handler="/v1/ask", method="POST", status="2xx") == 12
            assert value(text, "qa_index_articles") == 5
        pids = {line for line in server.log_lines if "Started server process" in line}
        assert len(pids) >= 2, server.log_lines[-20:]
        assert any("w-3" in line and "POST /v1/ask" in line for line in server.log_lines), server.log_lines[
            -20:
        ]
        assert (tmp_path / ".qa" / "metrics").is_dir()  # metrics.multiprocess_dir, beside the config
    finally:
        server.stop()


def test_the_default_handler_follows_sys_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """A runner that swaps sys.stderr and closes the old one (CliRunner does) leaves no handler writing
    to a closed stream: that printed '--- Logging error ---' tracebacks from every later line."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    try:
        logs.configure("INFO", "text")
        first.close()
        second = io.StringIO()
        monkeypatch.setattr(sys, "stderr", second)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("qa.test").exception("after the swap")
        assert "after the swap" in second.getvalue() and "ValueError: boom" in second.getvalue()
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        root.setLevel(level)
