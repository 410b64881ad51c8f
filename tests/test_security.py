"""Security defaults: the bind address, constant-time secrets, upload limits, and file access confined to
the corpus (and index) folders whatever a request says."""

from __future__ import annotations

import hmac
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import qa.cli
from qa.api.app import create_app
from qa.api.web import STATIC_DIR
from qa.bot.telegram import SECRET_HEADER
from qa.config import load_settings
from qa.documents import NewDocument
from qa.engine import Engine
from qa.errors import ConfigError
from qa.index.search_index import SearchIndex
from qa.indexing import IndexService
from qa.pipeline import Retrieval
from tests.conftest import CONFIG, ROOT, settings_in
from tests.test_bad_input import CANARY, Bad, InProcess

NEW_TEXT = (
    "芽庄市与昆明市签署友好城市协议\n\n"
    "3月5日,芽庄市与昆明市在芽庄签署友好城市协议,双方将开通直航航线,并在旅游、教育和农业领域开展合作。\n"
)
QUESTION = "胡志明市与中国多少个城市建立了友好合作关系？"


def app_in(root: Path, **sections: dict[str, Any]) -> FastAPI:
    settings = settings_in(root, **sections)
    return create_app(settings, Engine(settings).open(sync=True, show_progress=False))


# -- the bind address ------------------------------------------------------------------------------


def test_the_configured_default_host_is_loopback() -> None:
    assert load_settings(CONFIG).server.host == "127.0.0.1"


def test_a_config_without_a_host_does_not_start(tmp_path: Path) -> None:
    """No code default that could bind every interface: the host must come from the config."""
    text = CONFIG.read_text(encoding="utf-8")
    assert 'host = "127.0.0.1"' in text
    config = tmp_path / "config.toml"
    config.write_text(text.replace('host = "127.0.0.1"', "", 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"server\.host"):
        load_settings(config)


@pytest.mark.parametrize(
    ("args", "env", "host", "port"),
    [
        ([], {}, "127.0.0.1", 8000),
        (["--port", "9001"], {}, "127.0.0.1", 9001),
        (["--host", "0.0.0.0"], {}, "0.0.0.0", 8000),
        ([], {"QA_SERVER__HOST": "::1"}, "::1", 8000),
    ],
    ids=["default", "port only", "--host", "environment"],
)
def test_qa_serve_binds_loopback_unless_configured(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], host: str, port: int
) -> None:
    for name in [n for n in os.environ if n.startswith("QA_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    calls: list[dict[str, Any]] = []

    def fake_run(app: Any, **kwargs: Any) -> None:
        assert isinstance(app, FastAPI)
        calls.append(kwargs)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    result = CliRunner().invoke(qa.cli.app, ["--config", str(CONFIG), "serve", *args])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    assert calls[0]["host"] == host and calls[0]["port"] == port


def test_no_cross_origin_access(tmp_path: Path) -> None:
    """No CORS headers: a page on another origin cannot read answers or articles from the service."""
    with TestClient(app_in(tmp_path)) as client:
        origin = {"Origin": "http://evil.example"}
        response = client.get("/v1/documents", headers=origin)
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers
        preflight = client.options("/v1/ask", headers={**origin, "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 405
        assert "access-control-allow-origin" not in preflight.headers
        assert preflight.headers["allow"] == "POST"


# -- secrets are compared in constant time ---------------------------------------------------------


class CompareSpy:
    """Stands in for hmac.compare_digest: records every call; answers like it, or as told."""

    def __init__(self, answer: bool | None = None) -> None:
        self.answer = answer
        self.calls: list[tuple[bytes, bytes]] = []
        self.real: Callable[[Any, Any], bool] = hmac.compare_digest

    def __call__(self, a: Any, b: Any) -> bool:
        self.calls.append((a, b))
        return self.real(a, b) if self.answer is None else self.answer


def test_api_keys_are_compared_with_compare_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = ["key-one", "key-two"]
    app = app_in(tmp_path, server={"api_keys": keys})
    spy = CompareSpy()
    monkeypatch.setattr(hmac, "compare_digest", spy)
    with TestClient(app) as client:

        def status(key: str) -> int:
            return client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code

        assert status("key-two") == 200
        # every configured key is compared, with no early exit on the first match
        assert spy.calls == [(b"key-two", b"key-one"), (b"key-two", b"key-two")]
        spy.calls.clear()
        assert status("key-thr") == 401
        assert spy.calls == [(b"key-thr", b"key-one"), (b"key-thr", b"key-two")]

        # the decision is compare_digest's alone: no == on the side
        spy.answer = False
        assert status("key-one") == 401
        spy.answer = True
        assert status("not-a-key") == 200
        # a missing header never reaches a comparison
        spy.calls.clear()
        assert client.get("/v1/models").status_code == 401
        assert spy.calls == []


def test_telegram_secret_is_compared_with_compare_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    telegram = {"enabled": True, "bot_token": "123456:TEST-TOKEN", "secret_token": "tg-secret"}
    app = app_in(tmp_path, telegram=telegram)
    spy = CompareSpy()
    monkeypatch.setattr(hmac, "compare_digest", spy)
    no_message = {"update_id": 1}  # acknowledged and ignored: nothing is sent to Telegram
    with TestClient(app) as client:

        def post(secret: str, update_id: int) -> int:
            response = client.post(
                "/telegram/webhook", json={"update_id": update_id}, headers={SECRET_HEADER: secret}
            )
            return response.status_code

        assert post("tg-secret", 1) == 200
        assert spy.calls == [(b"tg-secret", b"tg-secret")]
        assert post("tg-secreT", 2) == 403
        assert spy.calls[-1] == (b"tg-secreT", b"tg-secret")
        spy.answer = False
        assert post("tg-secret", 3) == 403
        spy.answer = True
        assert post("wrong", 4) == 200
        assert client.post("/telegram/webhook", json=no_message).status_code == 401


# -- upload limits ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_limit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    root = tmp_path_factory.mktemp("limits")
    app = app_in(root, server={"max_body_bytes": 4096})
    with TestClient(app) as client:
        yield client, root / "corpus"


def page(size: int) -> bytes:
    body = NEW_TEXT.encode()
    while len(body) < size:
        body += "芽庄市与昆明市将在旅游和教育领域开展合作。\n".encode()
    return body[:size].decode("utf-8", "ignore").encode()


def test_upload_size_limit_is_the_configured_body_limit(small_limit: tuple[TestClient, Path]) -> None:
    client, corpus = small_limit
    fits = client.post("/v1/documents", files={"file": ("fits.txt", page(3000))})
    assert fits.status_code == 201, fits.text
    too_big = client.post("/v1/documents", files={"file": ("big.txt", page(5000))})
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"
    as_json = client.post("/v1/documents", json={"doc_id": "big-json", "text": page(5000).decode()})
    assert as_json.status_code == 413
    assert {p.stem for p in corpus.iterdir()} >= {"fits"}
    assert not [p for p in corpus.iterdir() if p.stem.startswith("big")]
    assert client.delete("/v1/documents/fits").status_code == 204


@pytest.mark.parametrize(
    ("filename", "content", "status"),
    [
        ("page.txt", NEW_TEXT.encode(), 201),
        ("page.md", NEW_TEXT.encode(), 201),
        ("page.TXT", NEW_TEXT.encode(), 201),
        ("page.pdf", b"%PDF-1.7\n", 422),
        ("page.html", b"<script>alert(1)</script>", 422),
        ("page.exe", b"MZ\x90\x00", 422),
        ("page.txt.exe", NEW_TEXT.encode(), 422),
        ("page.jsonl", b'{"id": "x", "text": "y"}\n', 422),
        ("page.svg", b"<svg onload=alert(1)>", 422),
        ("page.txt", b"MZ\x90\x00\x03\x00\x00\x00", 422),  # binary under a .txt name
        ("page.txt", "越南与中国".encode("gbk"), 422),  # not UTF-8
    ],
    ids=["txt", "md", "TXT", "pdf", "html", "exe", "txt.exe", "jsonl", "svg", "binary txt", "gbk txt"],
)
def test_upload_types(
    small_limit: tuple[TestClient, Path], filename: str, content: bytes, status: int
) -> None:
    client, corpus = small_limit
    before = sorted(p.name for p in corpus.iterdir())
    response = client.post("/v1/documents", files={"file": (filename, content, "application/octet-stream")})
    assert response.status_code == status, response.text
    if status == 201:
        doc_id = response.json()["doc_id"]
        assert doc_id == "page"
        assert client.delete(f"/v1/documents/{doc_id}").status_code == 204
    else:
        assert set(response.json()) == {"error"}
    assert sorted(p.name for p in corpus.iterdir()) == before


# -- no path from a request is opened outside the corpus -------------------------------------------

FILE_EVENTS = {
    "open",
    "os.remove",
    "os.rename",
    "os.rmdir",
    "os.mkdir",
    "os.listdir",
    "os.scandir",
    "os.truncate",
    "os.chmod",
    "os.chown",
    "os.link",
    "os.symlink",
    "os.utime",
    "shutil.rmtree",
    "shutil.copyfile",
    "shutil.move",
}


# where an event carries a dir_fd that relative paths are resolved against (CPython's audit events table)
DIR_FD = {"os.remove": 1, "os.rmdir": 1, "os.mkdir": 2, "os.chmod": 2, "os.utime": 3, "os.rename": 2}


class FileAccess:
    """Every path the process opens, lists or changes while recording (a ``sys.addaudithook`` hook).

    Relative paths are resolved against their ``dir_fd`` when the event reports it; ``os.open`` of a
    bare name does not, and is shutil.rmtree walking the tree it reported last (fd-based, it cannot
    leave that tree)."""

    installed: FileAccess | None = None

    def __init__(self) -> None:
        self.recording = False
        self.paths: list[tuple[str, str]] = []
        self.rmtree: str | None = None

    @classmethod
    def get(cls) -> FileAccess:
        if cls.installed is None:  # audit hooks cannot be removed: install one for the session
            cls.installed = FileAccess()
            sys.addaudithook(cls.installed.hook)
        return cls.installed

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.recording or event not in FILE_EVENTS:
            return
        two = event in {"os.rename", "os.link", "os.symlink", "shutil.copyfile", "shutil.move"}
        position = DIR_FD.get(event)
        dir_fd = args[position] if position is not None and len(args) > position else None
        for arg in args[: 2 if two else 1]:
            if not isinstance(arg, str | bytes | os.PathLike):
                continue
            path = os.fsdecode(arg)
            if os.path.isabs(path):
                resolved = os.path.abspath(path)
            elif isinstance(dir_fd, int):
                resolved = os.path.abspath(os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path))
            elif event == "open" and args[1] is None and self.rmtree and os.sep not in path:
                resolved = os.path.join(self.rmtree, path)
            else:
                resolved = os.path.abspath(path)
            self.paths.append((event, resolved))
            if event == "shutil.rmtree":
                self.rmtree = resolved

    def __enter__(self) -> FileAccess:
        self.paths.clear()
        self.recording = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.recording = False


TRAVERSALS = [
    "../secret",
    "../../secret",
    "../etc/passwd",
    "/etc/passwd",
    "/etc/passwd.txt",
    "..\\secret",
    "C:\\secret",
    "secret\x00.txt",
    "secret\n",
    "..",
    ".",
    ".secret",
    "%2e%2e/secret",
    "corpus/../secret",
    "../corpus/000_a2194725df4ab5f6",
    f"{'a' * 300}",
]


def attack(client: TestClient, transport: InProcess) -> int:
    """Every route that takes a name, with every traversal; returns how many requests were sent."""
    sent = 0
    for payload in TRAVERSALS:
        quoted = quote(payload, safe="")
        requests: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", f"/v1/documents/{quoted}", {}),
            ("DELETE", f"/v1/documents/{quoted}", {}),
            ("POST", "/v1/documents", {"json": {"doc_id": payload, "text": NEW_TEXT}}),
            ("POST", "/v1/documents", {"json": {"doc_id": payload, "text": NEW_TEXT, "title": "t"}}),
            ("POST", "/v1/documents", {"files": {"file": (payload, NEW_TEXT.encode())}}),
            ("POST", "/v1/documents", {"files": {"file": (f"{payload}.txt", NEW_TEXT.encode())}}),
            (
                "POST",
                "/v1/documents",
                {"files": {"file": ("a.txt", NEW_TEXT.encode())}, "data": {"doc_id": payload}},
            ),
            ("POST", "/v1/ask", {"json": {"question": QUESTION, "filters": {"doc_ids": [payload]}}}),
            ("GET", f"/static/{quoted}", {}),
        ]
        for method, path, kwargs in requests:
            response = client.request(method, path, **kwargs)
            assert response.status_code < 500, (method, path, response.text)
            if response.status_code == 201:  # a base name inside the corpus: take it out again
                assert client.delete(f"/v1/documents/{response.json()['doc_id']}").status_code == 204
            sent += 1
        for target in (f"/v1/documents/{payload}", f"/static/{payload}", f"/static/../{payload}"):
            if all(0x21 <= ord(ch) < 0x7F for ch in target):  # what a raw request line can carry
                for method in ("GET", "DELETE"):
                    assert transport.send(Bad("", method, target, None, None, wire=True)).status < 500
                    sent += 1
    return sent


def test_no_request_path_is_opened_outside_the_corpus(tmp_path: Path) -> None:
    root = tmp_path / "service"
    root.mkdir()
    secret = "CANARY-b93e-outside-the-corpus"
    (root / "secret.txt").write_text(f"{secret}\n\n越南与中国的合作。\n", encoding="utf-8")
    (root / "secret").write_text(secret, encoding="utf-8")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text(secret, encoding="utf-8")
    app = app_in(root)
    corpus, index = root / "corpus", root / "index"
    access = FileAccess.get()
    with InProcess(app) as transport:
        client = transport.client
        # warm up once outside the recording: lazy imports, mimetypes, the web page
        assert client.post("/v1/documents", json={"doc_id": "warm", "text": NEW_TEXT}).status_code == 201
        assert client.delete("/v1/documents/warm").status_code == 204
        assert client.post("/v1/ask", json={"question": QUESTION}).status_code == 200
        assert client.get("/").status_code == 200 and client.get("/static/app.js").status_code == 200
        assert client.get("/static/nothing.js").status_code == 404
        with access:
            sent = attack(client, transport)
        paths = list(access.paths)

    assert sent > 200
    assert paths, "the audit hook saw no file access at all"
    allowed = [str(corpus), str(index), str(STATIC_DIR)]
    code = [sys.prefix, sys.base_prefix, str(ROOT / "qa"), str(ROOT / "embeddings")]

    def inside(path: str, folders: list[str]) -> bool:
        return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)

    outside = [
        (event, path)
        for event, path in paths
        if not inside(path, allowed)
        and not (inside(path, code) and event == "open" and path.endswith((".py", ".pyc", ".so")))
    ]
    assert not outside, outside[:20]
    # and what was written or removed was in the corpus or the index
    written = [(e, p) for e, p in paths if e != "open" and e not in {"os.listdir", "os.scandir"}]
    assert all(inside(p, [str(corpus), str(index)]) for _, p in written), written
    assert (root / "secret.txt").read_text(encoding="utf-8").startswith(secret)
    assert sorted(p.name for p in root.iterdir()) == ["corpus", "etc", "index", "secret", "secret.txt"]


# -- a refused write changes nothing -----------------------------------------------------------------

KEPT = "保留的文章\n\n3月5日,岘港市与青岛市签署友好城市协议,双方将在港口、物流和旅游领域开展合作。\n"


def corpus_bytes(corpus: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(corpus.iterdir())}


@pytest.fixture
def writable(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    settings = settings_in(tmp_path)
    with TestClient(create_app(settings, Engine(settings).open(sync=True, show_progress=False))) as client:
        yield client, settings.corpus_dir


def restarted(root: Path) -> TestClient:
    """A new engine over the same folders, as after a server restart (it syncs with the corpus)."""
    settings = settings_in(root)
    return TestClient(create_app(settings, Engine(settings).open(sync=True, show_progress=False)))


ORIGINALS = {
    "page": {"doc_id": "keep-1", "text": KEPT},
    "record": {"doc_id": "keep-1", "text": KEPT, "title": "保留的文章", "date": "2025-03-05"},
}
REFUSED = {
    "NUL in a page": {"doc_id": "keep-1", "text": KEPT + "\x00"},
    "NUL in a record": {"doc_id": "keep-1", "text": "\x00" + KEPT, "title": "标题"},
    "only captions": {"doc_id": "keep-1", "text": "图自越通社\nanh-3.png\n"},
    "bad date": {"doc_id": "keep-1", "text": KEPT, "date": "2025-13-40"},
    "lone surrogate": {"doc_id": "keep-1", "text": KEPT + "\ud800", "title": "标题"},
}


@pytest.mark.parametrize("original", ORIGINALS, ids=list(ORIGINALS))
@pytest.mark.parametrize("replacement", REFUSED, ids=list(REFUSED))
def test_a_refused_replace_keeps_the_stored_article(
    tmp_path: Path, writable: tuple[TestClient, Path], original: str, replacement: str
) -> None:
    """The probe's data loss: a replace refused with 422 used to delete the stored article's file."""
    client, corpus = writable
    assert client.post("/v1/documents", json=ORIGINALS[original]).status_code == 201
    before = corpus_bytes(corpus)
    reply = client.post(
        "/v1/documents",
        content=json.dumps(REFUSED[replacement], ensure_ascii=True),
        headers={"content-type": "application/json"},
    )
    assert reply.status_code in {400, 422}, reply.text  # a lone surrogate is not even valid JSON: 400
    assert corpus_bytes(corpus) == before
    assert client.get("/v1/documents/keep-1").json()["text"] == KEPT
    with restarted(tmp_path) as again:  # the stored file, not just the loaded index, still holds it
        assert again.get("/v1/documents/keep-1").json()["text"] == KEPT


def test_a_refused_replace_of_a_bulk_record_keeps_the_bulk_file(writable: tuple[TestClient, Path]) -> None:
    client, corpus = writable
    records = [{"id": f"bulk-{n}", "title": f"标题{n}", "text": KEPT} for n in range(3)]
    (corpus / "bulk.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    client.app.state.engine.build(show_progress=False)  # type: ignore[attr-defined]
    before = corpus_bytes(corpus)
    assert client.post("/v1/documents", json={"doc_id": "bulk-1", "text": KEPT + "\x00"}).status_code == 422
    assert corpus_bytes(corpus) == before


@pytest.mark.parametrize("write", ["replace page", "replace record", "new", "delete"])
def test_a_write_whose_index_update_fails_puts_the_corpus_back(
    tmp_path: Path, writable: tuple[TestClient, Path], monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    client, corpus = writable
    engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
    assert client.post("/v1/documents", json=ORIGINALS["record"]).status_code == 201
    before = corpus_bytes(corpus)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(engine.indexing, "_update", broken)
    with pytest.raises(OSError, match="No space"):
        if write == "delete":
            engine.delete_document("keep-1")
        else:
            doc_id = "fresh" if write == "new" else "keep-1"
            title = "新标题" if write == "replace record" else None
            engine.add_document(NewDocument(doc_id, NEW_TEXT, title=title))
    assert corpus_bytes(corpus) == before
    monkeypatch.undo()
    with restarted(tmp_path) as again:
        assert again.get("/v1/documents/keep-1").json()["text"] == KEPT
        assert again.get("/v1/documents/fresh").status_code == 404


def test_an_index_published_before_a_failure_is_put_back(
    writable: tuple[TestClient, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The update published a version, then loading it failed: the index goes back to the corpus."""
    client, _ = writable
    engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
    original = IndexService.reload
    calls = 0

    def failing_once(self: IndexService[Retrieval], written: SearchIndex | None = None) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise MemoryError("cannot load the new version")
        original(self, written)

    monkeypatch.setattr(IndexService, "reload", failing_once)
    with pytest.raises(MemoryError):
        engine.add_document(NewDocument("fresh", NEW_TEXT))
    assert "fresh" not in engine.index.articles
    monkeypatch.undo()
    engine.reload()  # the live version on disk: put back too
    assert "fresh" not in engine.index.articles


# -- doc_ids that do not fit in a file name ---------------------------------------------------------

LONG_IDS = {"72 CJK characters": "新" * 72, "120 × é": "é" * 120, "200 CJK characters": "长" * 200}


@pytest.mark.parametrize("doc_id", LONG_IDS.values(), ids=list(LONG_IDS))
@pytest.mark.parametrize("metadata", [False, True], ids=["page", "record"])
def test_a_doc_id_longer_than_a_file_name_is_stored(
    tmp_path: Path, writable: tuple[TestClient, Path], doc_id: str, metadata: bool
) -> None:
    client, corpus = writable
    body = {"doc_id": doc_id, "text": NEW_TEXT} | ({"title": "芽庄市与昆明市"} if metadata else {})
    reply = client.post("/v1/documents", json=body)
    assert reply.status_code == 201, reply.text
    assert max(len(p.name.encode()) for p in corpus.iterdir()) <= 200
    path = f"/v1/documents/{quote(doc_id, safe='')}"
    assert client.get(path).json()["text"] == NEW_TEXT
    assert client.post("/v1/documents", json={**body, "text": KEPT}).json()["replaced"] is True
    with restarted(tmp_path) as again:
        assert again.get(path).json()["text"] == KEPT
        assert again.delete(path).status_code == 204
        assert again.get(path).status_code == 404
    assert not any(doc_id[:10] in p.name for p in corpus.iterdir())


def test_an_upload_whose_name_is_longer_than_a_file_name_is_stored(writable: tuple[TestClient, Path]) -> None:
    client, _ = writable
    name = "文" * 80 + ".txt"  # 244 bytes
    reply = client.post("/v1/documents", files={"file": (name, NEW_TEXT.encode())})
    assert reply.status_code == 201, reply.text
    assert reply.json()["doc_id"] == "文" * 80
    too_long = client.post("/v1/documents", files={"file": ("文" * 201 + ".txt", NEW_TEXT.encode())})
    assert too_long.status_code == 422


# -- links in the corpus folder ----------------------------------------------------------------------


def test_links_out_of_the_corpus_are_refused_and_reported(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    (outside / "folder").mkdir(parents=True)
    (outside / "file.txt").write_text(f"{CANARY}\n\n越南与中国的贸易额是多少。\n", encoding="utf-8")
    (outside / "folder" / "inner.txt").write_text(f"{CANARY}\n\n越南与中国的贸易额。\n", encoding="utf-8")
    settings = settings_in(tmp_path, corpus={"patterns": ["*.txt", "*/*.txt"]})
    (settings.corpus_dir / "x.txt").symlink_to(outside / "file.txt")
    (settings.corpus_dir / "linked").symlink_to(outside / "folder")
    engine = Engine(settings)
    report = engine.build(show_progress=False)
    reasons = {Path(e.path).name: e.reason for e in report.skipped}
    assert "symbolic link" in reasons["x.txt"]
    assert "outside the corpus" in reasons["inner.txt"]
    with TestClient(create_app(settings, engine)) as client:
        assert client.get("/v1/documents/x").status_code == 404
        assert client.get("/v1/documents/inner").status_code == 404
        assert CANARY not in client.post("/v1/ask", json={"question": "越南与中国的贸易额是多少"}).text
        # a replace or delete of that name never writes through the link
        assert client.post("/v1/documents", json={"doc_id": "x", "text": NEW_TEXT}).status_code == 201
        assert client.delete("/v1/documents/x").status_code == 204
    assert CANARY in (outside / "file.txt").read_text(encoding="utf-8")


# -- client-facing messages name no file-system path ------------------------------------------------

DAMAGE = {
    "CURRENT garbage": lambda index: (index / "CURRENT").write_bytes(b"\xff not a version"),
    "CURRENT names a missing version": lambda index: (index / "CURRENT").write_text("v-gone\n"),
    "a file corrupted": lambda index: next(p for p in index.rglob("*.npy")).write_bytes(b"broken"),
    "manifest not JSON": lambda index: next(index.rglob("manifest.json")).write_text("{"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_error_messages_name_no_path(tmp_path: Path, damage: str) -> None:
    settings = settings_in(tmp_path)
    Engine(settings).open(show_progress=False)
    DAMAGE[damage](settings.index_dir)
    engine = Engine(settings)
    with TestClient(create_app(settings, engine)) as client:
        deadline = time.monotonic() + 30
        while (ready := client.get("/readyz")).status_code == 503 and "loading" in ready.text:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        replies = [
            ready,
            client.post("/v1/ask", json={"question": "越南"}),
            client.get("/v1/documents"),
            client.post("/v1/documents", json={"doc_id": "n", "text": NEW_TEXT}),
        ]
    for reply in replies:
        assert reply.status_code in {200, 201, 503}, reply.text
        for leak in (str(tmp_path), "/tmp", str(ROOT), "CURRENT", "manifest.json"):
            assert leak not in reply.text, (reply.request.url, reply.text)
