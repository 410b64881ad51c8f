"""Schemathesis against the service's own OpenAPI schema (``app.openapi()``), in process over ASGI.

For every operation: schemathesis's coverage cases (boundary values, wrong types, missing fields, other
HTTP methods), then Hypothesis-generated positive and negative cases. Every response must be a
non-5xx with a documented status code, content type and headers, and a body that matches the documented
schema (streamed chat chunks included); schema-invalid input must be rejected with a 4xx.

``positive_data_acceptance`` is left out on purpose: the schema cannot say that a question must not be
blank, that a chat needs a user message or that an article must keep some text after its captions are
dropped, so schema-valid requests can still be a documented 422.

Generation is derandomized (the same requests on every run) and the example database is off.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from qa.api.app import create_app
from qa.engine import Engine
from tests.conftest import settings_in

KEY = "fuzz-key-0123456789"


@dataclass
class Report:
    """What was sent and what went wrong, per operation."""

    sent: Counter[tuple[str, str]] = field(default_factory=Counter)  # (operation, phase or mode)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)  # first line of the failure → curl + text

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def operations(self) -> set[str]:
        return {operation for operation, _ in self.sent}

    def send(self, case: Any, label: str, kind: str, headers: dict[str, str] | None) -> None:
        self.sent[(label, kind)] += 1
        try:
            # With a key injected into every request, a case that is "invalid" only for lacking the
            # Authorization header is rightly accepted: the open pass holds negative data to rejection.
            excluded = [positive_data_acceptance] + ([negative_data_rejection] if headers else [])
            response = case.call_and_validate(headers=headers, excluded_checks=excluded)
        except (Exception, BaseExceptionGroup) as exc:  # a failed check, or the app raised
            text = str(exc)
            first = next((line.strip() for line in text.splitlines() if line.strip().startswith("- ")), "")
            key = f"{label}: {type(exc).__name__} {first or text[:200]}"
            if key not in self.failures:
                self.failures[key] = f"{case.as_curl_command(headers=headers)[:1500]}\n{text[:3000]}"
            return
        self.statuses[(label, response.status_code)] += 1

    def summary(self) -> str:
        return "\n\n".join(f"{key}\n{detail}" for key, detail in self.failures.items())


def coverage_cases(schema: Any, operation: Any) -> Iterator[Any]:
    """Schemathesis's coverage phase for one operation (what its pytest plugin and CLI run first)."""
    config = schema.config.generation_for(operation=operation, phase="coverage")
    yield from schema.iter_coverage_cases(
        operation, generation_modes=list(GenerationMode), generation_config=config
    )


def generated(
    report: Report, operation: Any, mode: GenerationMode, examples: int, headers: dict[str, str] | None
) -> None:
    """Hypothesis-generated cases of one operation in one mode."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        report.send(case, operation.label, mode.value, headers)

    try:
        run()
    except Unsatisfiable:
        # an operation without parameters or body (GET /healthz) has no negative form
        if mode is GenerationMode.POSITIVE:
            raise


def fuzz(app: FastAPI, examples: int, *, headers: dict[str, str] | None = None) -> Report:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    report = Report()
    for result in schema.get_all_operations():
        operation = result.ok()
        for case in coverage_cases(schema, operation):
            report.send(case, operation.label, "coverage", headers)
        for mode in GenerationMode:
            generated(report, operation, mode, examples, headers)
    return report


def service(root: Path, **sections: dict[str, Any]) -> tuple[FastAPI, Path]:
    settings = settings_in(root, **sections)
    engine = Engine(settings).open(sync=True, show_progress=False)
    return create_app(settings, engine), settings.corpus_dir


def assert_clean(report: Report, root: Path, corpus: Path) -> None:
    assert not report.failures, f"{len(report.failures)} distinct failures:\n\n{report.summary()}"
    server_errors = {key: n for key, n in report.statuses.items() if key[1] >= 500}
    assert not server_errors, server_errors
    # whatever the requests said, files were only written as <doc_id>.txt/.jsonl in the corpus folder
    assert {p.name for p in root.iterdir()} <= {"corpus", "index", "models"}
    for path in corpus.rglob("*"):
        assert path.is_file() and path.parent == corpus, path
        assert path.suffix in {".txt", ".jsonl"} and "\n" not in path.name, path


def assert_exercised(report: Report) -> None:
    expected = {
        "POST /v1/ask",
        "POST /v1/chat/completions",
        "GET /v1/models",
        "GET /v1/documents",
        "POST /v1/documents",
        "GET /v1/documents/{doc_id}",
        "DELETE /v1/documents/{doc_id}",
        "GET /healthz",
        "GET /readyz",
        "GET /",
    }
    assert expected <= report.operations()
    statuses = {status for _, status in report.statuses}
    assert {200, 201, 204, 400, 404, 405, 415, 422} <= statuses, sorted(statuses)


def test_fuzz_schema_quick(tmp_path: Path) -> None:
    app, corpus = service(tmp_path)
    report = fuzz(app, examples=25)
    assert_clean(report, tmp_path, corpus)
    assert_exercised(report)
    assert report.total >= 500, report.sent


@pytest.mark.slow
def test_fuzz_schema_thousand_requests(tmp_path: Path) -> None:
    app, corpus = service(tmp_path / "open")
    report = fuzz(app, examples=100)
    assert_clean(report, tmp_path / "open", corpus)
    assert_exercised(report)
    assert report.total >= 1000, report.sent

    # with API keys: every /v1 operation declares the Bearer scheme; schemathesis's ignored_auth check
    # replays authorised requests without and with a wrong key and expects them refused
    secured_root = tmp_path / "secured"
    app, corpus = service(secured_root, server={"api_keys": [KEY]})
    secured = fuzz(app, examples=15, headers={"Authorization": f"Bearer {KEY}"})
    assert_clean(secured, secured_root, corpus)
    assert secured.total >= 200
    assert report.total + secured.total >= 1200


def test_streamed_chunks_match_the_documented_chunk_model(tmp_path: Path) -> None:
    """The schema documents each streamed event (`ChatCompletionChunk` or `[DONE]`); hold the stream to it."""
    from fastapi.testclient import TestClient

    from qa.api.schemas import ChatCompletionChunk

    app, _ = service(tmp_path)
    payload = {
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "胡志明市与中国多少个城市建立了友好合作关系？"}],
    }
    with TestClient(app) as client:
        text = client.post("/v1/chat/completions", json=payload).text
        schema = client.get("/openapi.json").json()
    events = [line[len("data:") :].strip() for line in text.splitlines() if line.startswith("data:")]
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(event) for event in events[:-1]]
    assert chunks[-1].choices == [] and chunks[-1].citations and chunks[-1].usage is not None
    assert all(c.citations is None for c in chunks[:-1])
    documented = schema["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    data = documented["text/event-stream"]["schema"]["properties"]["data"]["anyOf"][0]
    assert data["contentSchema"] == {"$ref": "#/components/schemas/ChatCompletionChunk"}
    assert "ChatCompletionChunk" in schema["components"]["schemas"]
