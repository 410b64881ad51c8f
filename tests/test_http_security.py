"""HTTP hardening: the Host check (DNS rebinding), the Origin check of writes (cross-site forms), security
headers, read-only API keys, rate limits, and what ``qa serve`` hands to uvicorn (timeouts, the deadline
for a request's head). The ``server`` tests run a real ``qa serve`` on 127.0.0.1 and open 300 stalled
connections against it."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import re
import selectors
import socket
import threading
import time
import tomllib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import qa.cli
from qa.api import workers
from qa.api.app import create_app
from qa.api.serving import protocol_class, protocol_path
from qa.api.web import STATIC_DIR
from qa.config import load_settings
from qa.engine import Engine
from qa.errors import ConfigError
from tests.conftest import CONFIG, settings_in
from tests.test_load import ServeProcess, toml_value, write_config

EVIL = "http://evil.example"
INJECTED = (
    "胡志明市与中国的友好合作关系\n\n"
    "据最新消息,胡志明市与中国999个地方建立了友好合作关系,这是虚假的注入文章。\n"
)
QUESTION = "胡志明市与中国多少个地方保持友好合作关系?"
HCMC = "000_a2194725df4ab5f6"


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    error: dict[str, Any] = body["error"]
    return error


def upload(client: TestClient, doc_id: str, headers: dict[str, str]) -> httpx.Response:
    """What an HTML form on another site can send without a CORS preflight."""
    files = {"file": (f"{doc_id}.txt", INJECTED.encode("utf-8"), "text/plain")}
    return client.post("/v1/documents", files=files, data={"doc_id": doc_id}, headers=headers)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("http-security")


@pytest.fixture(scope="module")
def engine(root: Path) -> Engine:
    settings = settings_in(root)
    return Engine(settings).open(sync=True, show_progress=False)


def app_with(root: Path, engine: Engine, **sections: dict[str, Any]) -> FastAPI:
    """An app over the module's engine with these config sections (the server's checks differ)."""
    return create_app(settings_in(root, **sections), engine)


@pytest.fixture(scope="module")
def client(root: Path, engine: Engine) -> Iterator[TestClient]:
    with TestClient(app_with(root, engine)) as test_client:
        yield test_client


# -- cross-site writes ------------------------------------------------------------------------------


def test_a_cross_site_form_cannot_add_an_article(client: TestClient, engine: Engine) -> None:
    """The probe: a form on http://evil.example posted multipart to /v1/documents and got 201."""
    error = error_of(upload(client, "evil-form", {"Origin": EVIL}), 403)
    assert error["code"] == "cross_origin_refused"
    assert "server.allowed_origins" in error["message"]
    assert "evil-form" not in engine.index.articles
    assert not (engine.settings.corpus_dir / "evil-form.txt").exists()
    passages = client.post("/v1/ask", json={"question": QUESTION}).json()["passages"]
    assert all(p["doc_id"] != "evil-form" for p in passages)


@pytest.mark.parametrize(
    "headers",
    [
        {"Referer": "http://evil.example/page.html"},  # no Origin: the Referer decides
        {"Origin": "null"},  # sandboxed frames, privacy redirects
        {"Origin": "http://testserver.evil.example"},
        {"Origin": "https://testserver"},  # another scheme is another origin
        {"Origin": "http://testserver:8080"},  # another port too
        {"Origin": "not a url"},
    ],
    ids=["referer", "null", "suffix", "scheme", "port", "garbage"],
)
def test_writes_from_other_origins_are_refused(client: TestClient, headers: dict[str, str]) -> None:
    assert error_of(upload(client, "evil-variant", headers), 403)["code"] == "cross_origin_refused"
    ask = client.post("/v1/ask", json={"question": QUESTION}, headers=headers)
    assert error_of(ask, 403)["code"] == "cross_origin_refused"


def test_a_cross_site_delete_is_refused(client: TestClient, engine: Engine) -> None:
    response = client.delete(f"/v1/documents/{HCMC}", headers={"Origin": EVIL})
    assert error_of(response, 403)["code"] == "cross_origin_refused"
    assert HCMC in engine.index.articles


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, server-side clients, the Telegram webhook
        {"Origin": "http://testserver"},  # the web page itself
        {"Origin": "http://TestServer:80"},  # the same origin, spelled out
        {"Referer": "http://testserver/"},
    ],
    ids=["no header", "same origin", "same origin spelled out", "same-origin referer"],
)
def test_same_origin_and_headerless_writes_pass(client: TestClient, headers: dict[str, str]) -> None:
    created = upload(client, "same-origin-upload", headers)
    assert created.status_code == 201, created.text
    assert client.delete("/v1/documents/same-origin-upload", headers=headers).status_code == 204


def test_reads_from_other_origins_are_answered_without_cors(client: TestClient) -> None:
    response = client.get("/v1/documents", headers={"Origin": EVIL})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_allowed_origins_let_another_site_write(root: Path, engine: Engine) -> None:
    app = app_with(root, engine, server={"allowed_origins": ["https://admin.example:8443"]})
    with TestClient(app) as client:
        ok = upload(client, "from-admin", {"Origin": "https://admin.example:8443"})
        assert ok.status_code == 201, ok.text
        assert client.delete("/v1/documents/from-admin").status_code == 204
        assert upload(client, "from-evil", {"Origin": EVIL}).status_code == 403


# -- the Host check (DNS rebinding) -----------------------------------------------------------------


def test_a_foreign_host_name_is_refused(client: TestClient) -> None:
    """DNS rebinding: evil.example resolves to 127.0.0.1, and the browser sends Host: attacker.example."""
    rebinding = {"Host": "attacker.example"}
    for response in (
        client.get("/v1/documents", headers=rebinding),
        client.get(f"/v1/documents/{HCMC}", headers=rebinding),
        client.post("/v1/ask", json={"question": QUESTION}, headers=rebinding),
        client.get("/", headers=rebinding),
        upload(client, "rebound", rebinding),
    ):
        error = error_of(response, 400)
        assert error["code"] == "invalid_host"
        assert "'attacker.example'" in error["message"] and "server.allowed_hosts" in error["message"]


def test_probes_answer_any_host(client: TestClient) -> None:
    """Load balancers probe replicas by IP address; the probes tell nothing about the articles."""
    assert client.get("/healthz", headers={"Host": "10.0.0.7:8000"}).status_code == 200
    assert client.get("/readyz", headers={"Host": "10.0.0.7:8000"}).status_code == 200


@pytest.mark.parametrize("value", ["a b", "host:99999", "ho/st", "[::1", ""])
def test_a_malformed_host_is_refused(client: TestClient, value: str) -> None:
    assert error_of(client.get("/v1/documents", headers={"Host": value}), 400)["code"] == "invalid_host"


def host_statuses(app: FastAPI, hosts: list[str]) -> dict[str, int]:
    with TestClient(app) as client:
        return {host: client.get("/v1/models", headers={"Host": host}).status_code for host in hosts}


HOSTS = [
    "localhost",
    "localhost:8000",
    "127.0.0.1:1234",
    "[::1]:8000",
    "LOCALHOST.",
    "10.1.2.3:8000",
    "qa.example.com",
    "docs.qa.example.com",
    "example.org",
    "news.example.org",
    "badexample.org",
    "attacker.example",
    "testserver",
]


@pytest.mark.parametrize(
    ("server", "allowed"),
    [
        (
            {"host": "127.0.0.1"},
            {"localhost", "localhost:8000", "127.0.0.1:1234", "[::1]:8000", "LOCALHOST."},
        ),
        ({"host": "::1"}, {"localhost", "localhost:8000", "127.0.0.1:1234", "[::1]:8000", "LOCALHOST."}),
        (
            {"host": "10.1.2.3"},
            {"localhost", "localhost:8000", "127.0.0.1:1234", "[::1]:8000", "LOCALHOST.", "10.1.2.3:8000"},
        ),
        ({"host": "0.0.0.0"}, {"localhost", "localhost:8000", "127.0.0.1:1234", "[::1]:8000", "LOCALHOST."}),
        (
            {"host": "0.0.0.0", "allowed_hosts": ["qa.example.com", ".example.org"]},
            {
                "localhost",
                "localhost:8000",
                "127.0.0.1:1234",
                "[::1]:8000",
                "LOCALHOST.",
                "qa.example.com",
                "example.org",
                "news.example.org",
            },
        ),
        ({"host": "0.0.0.0", "allowed_hosts": ["*"]}, set(HOSTS)),
    ],
    ids=["loopback", "ipv6 loopback", "one address", "every interface", "configured", "star"],
)
def test_the_accepted_host_names(
    root: Path, engine: Engine, server: dict[str, Any], allowed: set[str]
) -> None:
    app = app_with(root, engine, server={"allowed_hosts": [], **server})
    statuses = host_statuses(app, HOSTS)
    assert {h for h, status in statuses.items() if status == 200} == allowed, statuses
    assert {status for h, status in statuses.items() if h not in allowed} <= {400}


def test_binding_every_interface_without_allowed_hosts_tells_the_operator(
    root: Path, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="qa.api.security"):
        app = app_with(root, engine, server={"host": "0.0.0.0", "allowed_hosts": []})
    assert any("server.allowed_hosts" in r.getMessage() for r in caplog.records), caplog.records
    with TestClient(app) as client:
        error = error_of(client.get("/", headers={"Host": "qa.example.com"}), 400)
    assert "server.allowed_hosts" in error["message"]


def test_a_request_without_host_is_refused(client: TestClient) -> None:
    app = client.app
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.0",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/documents",
        "raw_path": b"/v1/documents",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    anyio.run(app, scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 400
    assert b"no Host header" in sent[1]["body"]


# -- security headers -------------------------------------------------------------------------------


def csp(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {d.split(" ", 1)[0]: d.partition(" ")[2] for d in (p.strip() for p in policy.split(";")) if d}


@pytest.mark.parametrize(
    "path",
    ["/", "/static/app.js", "/static/style.css", "/v1/documents", "/openapi.json", "/v1/nope", "/healthz"],
)
def test_every_response_carries_the_security_headers(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    policy = csp(response)
    assert policy["frame-ancestors"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'self'"
    assert "unsafe-inline" not in response.headers["content-security-policy"]


def test_error_responses_carry_them_too(client: TestClient) -> None:
    response = client.get("/", headers={"Host": "attacker.example"})
    assert response.status_code == 400
    assert response.headers["x-frame-options"] == "DENY"
    assert csp(response)["frame-ancestors"] == "'none'"


def test_the_api_docs_page_may_load_swagger_from_its_cdn(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "https://cdn.jsdelivr.net/npm/swagger-ui-dist" in response.text
    policy = csp(response)
    assert (
        "https://cdn.jsdelivr.net" in policy["script-src"]
        and "https://cdn.jsdelivr.net" in policy["style-src"]
    )
    assert policy["frame-ancestors"] == "'none'" and response.headers["x-frame-options"] == "DENY"


class InlineFinder(HTMLParser):
    """What a strict CSP would block in a page: inline scripts and styles, handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []
        self.sources: list[str] = []
        self._tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        names = dict(attrs)
        self.blocked += [f"{tag} {name}" for name in names if name.startswith("on") or name == "style"]
        if tag == "style":
            self.blocked.append("style element")
        for name in ("src", "href"):
            value = names.get(name)
            if value:
                self.sources.append(value)

    def handle_data(self, data: str) -> None:
        if self._tag == "script" and data.strip():
            self.blocked.append("inline script")

    def handle_endtag(self, tag: str) -> None:
        self._tag = ""


def test_the_page_needs_nothing_the_policy_blocks() -> None:
    finder = InlineFinder()
    finder.feed((STATIC_DIR / "index.html").read_text(encoding="utf-8"))
    assert finder.blocked == []
    assert all(s.startswith("/") and not s.startswith("//") for s in finder.sources), finder.sources
    script = (STATIC_DIR / "app.js").read_text(encoding="utf-8")
    assert not re.search(r"\beval\(|new Function|\"style\"|'style'", script)
    assert not re.search(r"fetch\(\s*[\"'`]https?:", script)  # the API is called on the page's own origin
    assert "url(" not in (STATIC_DIR / "style.css").read_text(encoding="utf-8")


# -- read-only keys ---------------------------------------------------------------------------------

FULL, READ = "full-key-0123456789", "read-key-0123456789"


@pytest.fixture(scope="module")
def keyed(root: Path, engine: Engine) -> Iterator[TestClient]:
    with TestClient(app_with(root, engine, server={"api_keys": [FULL], "read_keys": [READ]})) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_read_key_reads_and_asks(keyed: TestClient) -> None:
    headers = bearer(READ)
    assert keyed.get("/v1/documents", headers=headers).status_code == 200
    assert keyed.get(f"/v1/documents/{HCMC}", headers=headers).status_code == 200
    assert keyed.get("/v1/models", headers=headers).status_code == 200
    assert keyed.post("/v1/ask", json={"question": QUESTION}, headers=headers).status_code == 200
    chat = {"messages": [{"role": "user", "content": QUESTION}]}
    assert keyed.post("/v1/chat/completions", json=chat, headers=headers).status_code == 200


def test_a_read_key_cannot_write(keyed: TestClient, engine: Engine) -> None:
    for response in (
        upload(keyed, "read-key-upload", bearer(READ)),
        keyed.post("/v1/documents", json={"doc_id": "read-key-json", "text": INJECTED}, headers=bearer(READ)),
        keyed.delete(f"/v1/documents/{HCMC}", headers=bearer(READ)),
    ):
        error = error_of(response, 403)
        assert error["code"] == "read_only_key" and "server.api_keys" in error["message"]
    assert HCMC in engine.index.articles
    assert not {"read-key-upload", "read-key-json"} & set(engine.index.articles)


def test_a_full_key_writes_and_a_wrong_key_is_401(keyed: TestClient) -> None:
    assert upload(keyed, "full-key-upload", bearer(FULL)).status_code == 201
    assert keyed.delete("/v1/documents/full-key-upload", headers=bearer(FULL)).status_code == 204
    assert error_of(keyed.get("/v1/documents", headers=bearer("nope")), 401)["code"] == "unauthorized"
    assert error_of(keyed.get("/v1/documents"), 401)["code"] == "unauthorized"


def test_read_keys_alone_turn_authentication_on(root: Path, engine: Engine) -> None:
    with TestClient(app_with(root, engine, server={"read_keys": [READ]})) as client:
        assert client.get("/v1/documents").status_code == 401
        assert client.get("/v1/documents", headers=bearer(READ)).status_code == 200
        assert upload(client, "nobody-writes", bearer(READ)).status_code == 403
        assert "ApiKey" in client.get("/openapi.json").json()["components"]["securitySchemes"]


# -- rate limits ------------------------------------------------------------------------------------

LIMITED = {"enabled": True, "ask": "2/minute", "chat": "1/minute", "documents_write": "3/minute"}


def test_rate_limits_are_off_by_default(client: TestClient) -> None:
    assert load_settings(CONFIG).rate_limit.enabled is False
    statuses = {client.post("/v1/ask", json={"question": QUESTION}).status_code for _ in range(8)}
    assert statuses == {200}


def test_asking_too_often_is_429_with_retry_after(root: Path, engine: Engine) -> None:
    with TestClient(app_with(root, engine, rate_limit=LIMITED)) as client:
        ask = {"question": QUESTION}
        assert [client.post("/v1/ask", json=ask).status_code for _ in range(2)] == [200, 200]
        refused = client.post("/v1/ask", json=ask)
        error = error_of(refused, 429)
        assert error["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        chat = {"messages": [{"role": "user", "content": QUESTION}]}
        assert [client.post("/v1/chat/completions", json=chat).status_code for _ in range(2)] == [200, 429]
        # reads are not limited
        assert {client.get("/v1/documents").status_code for _ in range(5)} == {200}


def test_document_writes_share_one_limit(root: Path, engine: Engine) -> None:
    with TestClient(app_with(root, engine, rate_limit=LIMITED)) as client:
        assert upload(client, "limited-1", {}).status_code == 201
        assert upload(client, "limited-2", {}).status_code == 201
        assert client.delete("/v1/documents/limited-1").status_code == 204
        assert error_of(client.delete("/v1/documents/limited-2"), 429)["code"] == "rate_limited"
        assert error_of(upload(client, "limited-3", {}), 429)["code"] == "rate_limited"
    engine.delete_document("limited-2")


def test_the_limit_is_per_api_key_else_per_address(root: Path, engine: Engine) -> None:
    keys = {"api_keys": [FULL], "read_keys": [READ]}
    with TestClient(app_with(root, engine, server=keys, rate_limit=LIMITED)) as client:
        ask = {"question": QUESTION}
        assert [client.post("/v1/ask", json=ask, headers=bearer(READ)).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        assert client.post("/v1/ask", json=ask, headers=bearer(FULL)).status_code == 200  # its own count
    # without keys, a made-up bearer token is no identity: rotating tokens does not escape the limit
    with TestClient(app_with(root, engine, rate_limit=LIMITED)) as client:
        statuses = [
            client.post("/v1/ask", json=ask, headers=bearer(f"made-up-{n}")).status_code for n in range(3)
        ]
        assert statuses == [200, 200, 429]
    # another address has its own count
    app = app_with(root, engine, rate_limit=LIMITED)
    with (
        TestClient(app, client=("192.0.2.1", 4000)) as one,
        TestClient(app, client=("192.0.2.2", 4000)) as other,
    ):
        assert [one.post("/v1/ask", json=ask).status_code for _ in range(3)] == [200, 200, 429]
        assert other.post("/v1/ask", json=ask).status_code == 200


def test_a_storage_without_its_package_stops_start_up(root: Path, engine: Engine) -> None:
    if importlib.util.find_spec("redis") is not None:
        pytest.skip("the redis package is installed")
    limited = {**LIMITED, "storage": "redis://127.0.0.1:6379"}
    with pytest.raises(ConfigError, match=r"rate_limit\.storage .*redis"):
        app_with(root, engine, rate_limit=limited)


# -- OpenAPI ----------------------------------------------------------------------------------------


def test_the_new_statuses_are_documented(keyed: TestClient) -> None:
    schema = keyed.get("/openapi.json").json()
    paths = schema["paths"]
    for path, method in [
        ("/v1/ask", "post"),
        ("/v1/chat/completions", "post"),
        ("/v1/documents", "post"),
        ("/v1/documents/{doc_id}", "delete"),
    ]:
        assert {"403", "429"} <= set(paths[path][method]["responses"]), (path, method)
    assert "read_keys" in schema["components"]["securitySchemes"]["ApiKey"]["description"]
    for words in ("server.read_keys", "server.allowed_origins", "Retry-After", "Host"):
        assert words in schema["info"]["description"]


# -- configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"server": {"allowed_hosts": ["http://qa.example.com"]}}, "server.allowed_hosts"),
        ({"server": {"allowed_hosts": ["qa.example.com:8000"]}}, "server.allowed_hosts"),
        ({"server": {"allowed_origins": ["https://qa.example.com/page"]}}, "server.allowed_origins"),
        ({"server": {"allowed_origins": ["qa.example.com"]}}, "server.allowed_origins"),
        ({"server": {"read_keys": [""]}}, "server.read_keys"),
        ({"server": {"api_keys": ["same"], "read_keys": ["same"]}}, "server.api_keys"),
        ({"server": {"timeout_keep_alive": 0}}, "server.timeout_keep_alive"),
        ({"server": {"timeout_headers": 0}}, "server.timeout_headers"),
        ({"server": {"limit_concurrency": -1}}, "server.limit_concurrency"),
        ({"rate_limit": {"ask": "lots"}}, "rate_limit.ask"),
        ({"rate_limit": {"documents_write": "5/fortnight"}}, "rate_limit.documents_write"),
        ({"rate_limit": {"storage": "ftp://x"}}, "rate_limit.storage"),
        ({"rate_limit": {"strategy": "leaky-bucket"}}, "rate_limit.strategy"),
        ({"rate_limit": {"burst": 3}}, "rate_limit.burst"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_the_key(
    tmp_path: Path, sections: dict[str, dict[str, Any]], key: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        settings_in(tmp_path, **sections)


def test_the_defaults_are_in_config_toml() -> None:
    data = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    assert data["server"]["allowed_hosts"] == [] and data["server"]["allowed_origins"] == []
    assert data["server"]["read_keys"] == []
    assert data["server"]["timeout_keep_alive"] == 5 and data["server"]["timeout_headers"] == 10.0
    assert data["server"]["limit_concurrency"] == 0
    assert data["rate_limit"] == {
        "enabled": False,
        "ask": "60/minute",
        "chat": "60/minute",
        "documents_write": "30/minute",
        "strategy": "moving-window",
        "storage": "memory://",
    }


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QA_SERVER__ALLOWED_HOSTS", '["QA.example.com", ".example.org"]')
    monkeypatch.setenv("QA_SERVER__TIMEOUT_HEADERS", "3.5")
    monkeypatch.setenv("QA_RATE_LIMIT__ENABLED", "true")
    monkeypatch.setenv("QA_RATE_LIMIT__ASK", "5/second")
    settings = load_settings(CONFIG)
    assert settings.server.allowed_hosts == ("qa.example.com", ".example.org")
    assert settings.server.timeout_headers == 3.5
    assert settings.rate_limit.enabled and settings.rate_limit.ask == "5/second"


# -- what `qa serve` hands to uvicorn ---------------------------------------------------------------


def serve_calls(monkeypatch: pytest.MonkeyPatch, *args: str, env: dict[str, str] | None = None) -> list[Any]:
    for name in [n for n in os.environ if n.startswith("QA_")]:
        monkeypatch.delenv(name)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    for name in ("QA_CONFIG", "QA_SERVER__HOST"):  # `serve --workers` sets them: undone after the test
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    calls: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    monkeypatch.setattr(workers, "serve", lambda app, **kwargs: calls.append((app, {**kwargs, "own": True})))
    result = CliRunner().invoke(qa.cli.app, ["--config", str(CONFIG), "serve", *args])
    assert result.exit_code == 0, result.output
    return calls


def test_qa_serve_passes_the_timeouts_to_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    [(app, kwargs)] = serve_calls(monkeypatch)
    assert isinstance(app, FastAPI)
    assert kwargs["timeout_keep_alive"] == 5 and kwargs["limit_concurrency"] is None
    assert kwargs["http"] == protocol_path(10.0) == "qa.api.serving:HeadDeadline_10000ms"
    env = {"QA_SERVER__TIMEOUT_KEEP_ALIVE": "7", "QA_SERVER__TIMEOUT_HEADERS": "2.5"}
    [(_, kwargs)] = serve_calls(monkeypatch, env={**env, "QA_SERVER__LIMIT_CONCURRENCY": "500"})
    assert kwargs["timeout_keep_alive"] == 7 and kwargs["limit_concurrency"] == 500
    assert kwargs["http"] == "qa.api.serving:HeadDeadline_2500ms"


@pytest.mark.parametrize("own_sockets", [True, False])
def test_qa_serve_workers_pass_the_same_options(monkeypatch: pytest.MonkeyPatch, own_sockets: bool) -> None:
    """With a socket per worker (qa.api.workers, the default) and with uvicorn's one shared socket."""
    env = {"QA_SERVER__SOCKET_PER_WORKER": str(own_sockets).lower()}
    [(app, kwargs)] = serve_calls(monkeypatch, "--workers", "2", "--host", "10.1.2.3", env=env)
    assert app == "qa.api.app:app_from_config" and kwargs["workers"] == 2
    assert kwargs.get("own", False) is own_sockets and kwargs["host"] == "10.1.2.3"
    assert own_sockets or kwargs["factory"] is True
    assert kwargs["timeout_keep_alive"] == 5 and kwargs["http"] == "qa.api.serving:HeadDeadline_10000ms"
    # the worker processes' apps check Host against the address really bound
    assert os.environ["QA_SERVER__HOST"] == "10.1.2.3"
    assert load_settings().server.host == "10.1.2.3"


def test_qa_serve_checks_hosts_against_the_address_it_binds(monkeypatch: pytest.MonkeyPatch) -> None:
    [(app, _)] = serve_calls(monkeypatch, "--host", "10.1.2.3")
    assert app.state.settings.server.host == "10.1.2.3"


def test_the_protocol_is_importable_by_name_in_a_worker_process() -> None:
    """uvicorn imports ``http`` from its string in every spawned worker."""
    module, _, name = protocol_path(2.5).partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert cls is protocol_class(2500)
    assert cls.head_timeout == 2.5  # type: ignore[attr-defined]
    assert cls.__name__ == name and cls.__module__ == module
    with pytest.raises(AttributeError):
        importlib.import_module(module).NoSuchThing  # noqa: B018


# -- a real `qa serve`: 300 stalled connections -------------------------------------------------------

STALLED = 300
HEAD_TIMEOUT = 2.0


def serve_config(root: Path, **server: Any) -> Path:
    config = write_config(root)
    text = config.read_text(encoding="utf-8")
    for key, value in server.items():
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {toml_value(value)}", text)
        assert count == 1, key
    config.write_text(text, encoding="utf-8")
    return config


@pytest.fixture
def live(tmp_path: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(serve_config(tmp_path, timeout_headers=HEAD_TIMEOUT, timeout_keep_alive=5))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def open_stalled(port: int, count: int, head: bytes) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(head)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def wait_closed(sockets: list[socket.socket], started: float, limit: float) -> dict[int, float]:
    """Seconds after ``started`` at which the server closed each socket (EOF or reset), within ``limit``."""
    closed: dict[int, float] = {}
    with selectors.DefaultSelector() as selector:
        for n, sock in enumerate(sockets):
            selector.register(sock, selectors.EVENT_READ, n)
        while len(closed) < len(sockets) and time.monotonic() - started < limit:
            for key, _ in selector.select(timeout=0.2):
                n = key.data
                try:
                    data = key.fileobj.recv(4096)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    closed[n] = time.monotonic() - started
                    selector.unregister(key.fileobj)
    return closed


@pytest.mark.server
def test_stalled_request_heads_are_closed_and_do_not_starve_real_clients(live: ServeProcess) -> None:
    port = int(live.base.rsplit(":", 1)[1])
    heads = [
        b"GET /v1/documents HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",  # half a header
        b"POST /v1/ask HTT",  # half a request line
        b"",  # nothing at all
    ]
    started = time.monotonic()
    sockets: list[socket.socket] = []
    try:
        for n in range(STALLED):
            sockets += open_stalled(port, 1, heads[n % len(heads)])
        opened = time.monotonic() - started
        # while they are all open, a normal request is answered at once
        before = time.monotonic()
        response = httpx.get(f"{live.base}/v1/documents", timeout=5)
        answered = time.monotonic() - before
        assert response.status_code == 200
        assert answered < 3, answered
        closed = wait_closed(sockets, started, limit=HEAD_TIMEOUT + opened + 8)
        assert len(closed) == STALLED, f"{STALLED - len(closed)} stalled connections still open"
        slowest = max(closed.values())
        assert min(closed.values()) >= HEAD_TIMEOUT * 0.9 and slowest <= opened + HEAD_TIMEOUT + 2, closed
        logging.getLogger(__name__).warning(
            "%d stalled sockets opened in %.2fs; a normal request answered in %.3fs; all closed after "
            "%.2f-%.2fs (deadline %.1fs)",
            STALLED,
            opened,
            answered,
            min(closed.values()),
            slowest,
            HEAD_TIMEOUT,
        )
        # a slow but steady client that completes its head within the deadline is served
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"\r\n"):
                slow.sendall(piece)
                time.sleep(HEAD_TIMEOUT / 4)
            assert slow.recv(4096).startswith(b"HTTP/1.1 200")
        # and the service still answers
        assert httpx.get(f"{live.base}/v1/documents", timeout=5).status_code == 200
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) from a blocking socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(4096)
    return data


@pytest.mark.server
def test_a_kept_alive_connection_that_stalls_its_next_head_is_closed(live: ServeProcess) -> None:
    port = int(live.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.")  # the next request's head stalls
        started = time.monotonic()
        sock.settimeout(HEAD_TIMEOUT + 5)
        assert sock.recv(4096) == b""
        assert HEAD_TIMEOUT * 0.9 <= time.monotonic() - started <= HEAD_TIMEOUT + 2


@pytest.mark.server
def test_worker_processes_close_stalled_heads_too(tmp_path: Path) -> None:
    """``qa serve --workers 2``: each spawned worker imports the protocol by name, deadline included."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = serve_config(tmp_path, timeout_headers=1.5)
    server = ServeProcess(config, ("--port", str(port), "--workers", "2"))
    server.start()
    sockets: list[socket.socket] = []
    try:
        started = time.monotonic()
        sockets = open_stalled(port, 100, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        closed = wait_closed(sockets, started, limit=10)
        assert len(closed) == 100 and max(closed.values()) <= 4, closed
        assert httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": "attacker.example"}).status_code == 400
    finally:
        for sock in sockets:
            sock.close()
        server.stop()


@pytest.mark.server
def test_the_h11_protocol_has_the_deadline_too(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    app = create_app(settings, Engine(settings).open(sync=True, show_progress=False))
    config = uvicorn.Config(app, log_level="warning", http=protocol_class(1000, "h11"), lifespan="on")
    server = uvicorn.Server(config)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        sockets = open_stalled(port, 50, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        closed = wait_closed(sockets, started, limit=8)
        assert len(closed) == 50 and max(closed.values()) <= 4, closed
    finally:
        server.should_exit = True
        thread.join(15)
        listener.close()


@pytest.mark.server
def test_a_real_server_refuses_rebinding_and_cross_site_forms(live: ServeProcess) -> None:
    with httpx.Client(base_url=live.base, timeout=10) as client:
        assert client.get("/v1/documents", headers={"Host": "attacker.example"}).status_code == 400
        files = {"file": ("evil.txt", INJECTED.encode("utf-8"), "text/plain")}
        assert client.post("/v1/documents", files=files, headers={"Origin": EVIL}).status_code == 403
        page = client.get("/")
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        # the page's own origin may write
        own = client.post("/v1/documents", files=files, headers={"Origin": live.base})
        assert own.status_code == 201, own.text


# -- a real browser: a form on another site, and the page under its CSP -------------------------------

CHROMIUM = Path(os.environ.get("QA_CHROMIUM", "/usr/bin/chromium"))
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]

EVIL_PAGE = """<!doctype html><html><body>
<form id="f" method="post" enctype="multipart/form-data" action="{action}">
<input type="hidden" name="doc_id" value="browser-evil">
<input type="file" name="file" id="file">
</form></body></html>"""


@pytest.mark.server
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")
def test_a_browser_form_on_another_site_cannot_add_an_article(live: ServeProcess, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    article = tmp_path / "browser-evil.txt"
    article.write_text(INJECTED, encoding="utf-8")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            # http://evil.example/ is served by the browser itself: a page of another origin
            page.route(
                "http://evil.example/**",
                lambda route: route.fulfill(
                    content_type="text/html", body=EVIL_PAGE.format(action=f"{live.base}/v1/documents")
                ),
            )
            page.goto("http://evil.example/")
            page.set_input_files("#file", str(article))
            with page.expect_navigation():
                page.evaluate("document.getElementById('f').submit()")
            assert "cross_origin_refused" in page.content()
            # the service's own page still works under its CSP: it lists and reads articles
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(live.base + "/")
            page.wait_for_selector("#question")
            assert page.evaluate("fetch('/v1/documents').then(r => r.status)") == 200
            assert problems == []
        finally:
            browser.close()
    assert httpx.get(f"{live.base}/v1/documents/browser-evil", timeout=5).status_code == 404
