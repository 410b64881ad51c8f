"""Several engines or server processes over one index folder follow each other's writes."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from qa.config import Settings
from qa.documents import NewDocument
from qa.engine import Engine
from qa.index import layout
from tests.test_load import ServeProcess, write_config

TEXT = (
    "芽庄市与昆明市签署友好城市协议\n\n"
    "3月5日,芽庄市与昆明市在芽庄签署友好城市协议,双方将开通直航航线,并在旅游、教育和农业领域开展合作。\n"
)
QUESTION = "芽庄市与昆明市签署了什么协议?"


def cited(answer_json: dict[str, object], doc_id: str) -> bool:
    passages = answer_json["passages"]
    assert isinstance(passages, list)
    return any(p["doc_id"] == doc_id for p in passages)


def test_an_engine_answers_from_what_another_engine_published(fake_settings: Settings) -> None:
    writer = Engine(fake_settings).open(show_progress=False)
    reader = Engine(fake_settings).open(build_if_missing=False)
    before = reader.index.version
    writer.add_document(NewDocument(doc_id="nhatrang-kunming", text=TEXT))
    answer = reader.ask(QUESTION)  # no explicit reload: the question itself notices the new version
    assert reader.index.version != before
    assert any(h.chunk.doc_id == "nhatrang-kunming" for h in answer.hits)
    writer.delete_document("nhatrang-kunming")
    assert all(h.chunk.doc_id != "nhatrang-kunming" for h in reader.ask(QUESTION).hits)


def test_a_broken_live_version_leaves_the_loaded_one_serving(fake_settings: Settings) -> None:
    writer = Engine(fake_settings).open(show_progress=False)
    reader = Engine(fake_settings).open(build_if_missing=False)
    loaded = reader.index.version
    writer.add_document(NewDocument(doc_id="nhatrang-kunming", text=TEXT))
    live = writer.index.version
    assert live is not None and live != loaded
    newest = layout.manifest_segments(layout.read_manifest(live, verify=False))[-1]
    (layout.segment_dir(fake_settings.index_dir, newest) / "table.bin").write_text("garbage\n")
    answer = reader.ask("胡志明市与中国多少个地方保持友好合作关系?")
    assert reader.index.version == loaded and answer.hits


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def every_worker_ready(base_url: str, streak: int = 20, deadline_s: float = 120.0) -> None:
    """Wait until ``streak`` readiness probes in a row, each on a new connection (the kernel spreads
    those over the workers), answer 200: start() returns once one worker is ready, not every one."""
    deadline = time.monotonic() + deadline_s
    ok = 0
    while ok < streak:
        assert time.monotonic() < deadline, "the workers never all became ready"
        with httpx.Client(base_url=base_url, timeout=30) as fresh:
            ok = ok + 1 if fresh.get("/readyz").status_code == 200 else 0
        if not ok:
            time.sleep(0.2)


@pytest.mark.server
def test_two_worker_processes_never_cite_a_deleted_article(tmp_path: Path) -> None:
    port = free_port()
    server = ServeProcess(write_config(tmp_path), ("--port", str(port), "--workers", "2"))
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            every_worker_ready(f"http://127.0.0.1:{port}")
            for _ in range(10):
                added = client.post("/v1/documents", json={"doc_id": "nhatrang-kunming", "text": TEXT})
                assert added.status_code in (200, 201), added.text
                # new connections: the kernel spreads them over both workers
                for _ in range(6):
                    with httpx.Client(base_url=client.base_url, timeout=30) as fresh:
                        reply = fresh.post("/v1/ask", json={"question": QUESTION})
                        assert reply.status_code == 200 and cited(reply.json(), "nhatrang-kunming")
                assert client.delete("/v1/documents/nhatrang-kunming").status_code in (200, 204)
                for _ in range(6):
                    with httpx.Client(base_url=client.base_url, timeout=30) as fresh:
                        reply = fresh.post("/v1/ask", json={"question": QUESTION})
                        assert reply.status_code == 200 and not cited(reply.json(), "nhatrang-kunming")
        pids = {line for line in server.log_lines if "Started server process" in line}
        assert len(pids) >= 2, server.log_lines[-20:]
    finally:
        server.stop()


def test_a_loaded_snapshot_has_its_corpus_statistics_ready(fake_settings: Settings) -> None:
    engine = Engine(fake_settings).open(show_progress=False)
    snapshot = engine.indexing.current()
    assert snapshot.variants._by_sound is not None  # built at load, not by the first question
