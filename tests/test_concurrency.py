"""Writes while questions run, and several writers on one index folder.

Questions never see a half-updated index: every answer comes from one snapshot and cites that snapshot's
articles exactly; a document whose delete has returned is never cited by a question asked afterwards.
Two engines, in one process or in two, adding, deleting and building on the same folders are serialised
by the build lock and leave an index that matches the corpus folder.
"""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qa.config import Settings
from qa.documents import NewDocument
from qa.engine import Engine, Filters
from qa.errors import DocumentNotFoundError
from qa.index import layout
from qa.index.builder import article_hash
from qa.pipeline import Retrieval
from qa.records import Answer
from tests.conftest import settings_in
from tests.crash_worker import Zygote, read_log
from tests.test_crash_safety import (
    QUESTION,
    assert_clean,
    check_answers,
    corpus_state,
    index_state,
    sentence_pool,
    stored_article,
)

SEED_IDS = {
    "000_a2194725df4ab5f6",
    "001_53bd41b2b23f3bca",
    "002_714598442bb43c6e",
    "003_de8d194c5a4a5bf1",
    "004_9796523c0b21f5fd",
}
QUESTIONS = [
    QUESTION,
    "越南与中国的贸易额是多少?",
    "广西壮族自治区党委书记是谁?",
    "胡志明市与中国多少个地方保持友好合作关系?",
]
JOIN = 60.0  # seconds: the longest a thread may take


def new_document(rng: random.Random, pool: list[str], doc_id: str) -> tuple[NewDocument, str]:
    """A document and a question one of its own sentences answers."""
    body = rng.sample(pool, 3)
    return NewDocument(doc_id, f"{doc_id} 新闻\n\n" + "\n".join(body)), body[1][:60]


class Recorder:
    """The snapshot each question of a thread was answered from (the engine takes it once per question)."""

    def __init__(self, engine: Engine) -> None:
        self.local = threading.local()
        original = engine.indexing.current

        def require() -> Retrieval:
            snapshot = original()
            self.local.snapshot = snapshot
            return snapshot

        engine.indexing.current = require  # type: ignore[method-assign]

    def ask(self, engine: Engine, question: str, **kwargs: Any) -> tuple[Answer, Retrieval]:
        self.local.snapshot = None
        answer = engine.ask(question, **kwargs)
        assert self.local.snapshot is not None
        return answer, self.local.snapshot


def check_consistent(answer: Answer, snapshot: Retrieval) -> None:
    index = snapshot.index
    assert len(index.chunks) == len(index.tokens) == len(index.passages)
    for hit in answer.hits:
        article = index.articles[hit.chunk.doc_id]
        assert article.text[hit.chunk.start : hit.chunk.end] == hit.chunk.text, hit.chunk
        assert hit.title == article.title and hit.date == article.date


def run_threads(targets: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def guard(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guard(t), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + JOIN
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


def test_adds_and_deletes_while_questions_run(fake_settings: Settings) -> None:
    engine = Engine(fake_settings).open(show_progress=False)
    recorder = Recorder(engine)
    pool = sentence_pool()
    deleted_at: dict[str, float] = {}  # doc_id -> a moment after its delete returned
    replaced_at: dict[str, tuple[float, str]] = {}  # doc_id -> (after the replace returned, new hash)
    questions = list(QUESTIONS)
    writers_done = threading.Event()
    answered = [0]

    def writer(name: str, seed: int) -> None:
        rng = random.Random(seed)
        live: list[str] = []
        for i in range(4):
            doc, question = new_document(rng, pool, f"{name}-{i}")
            engine.add_document(doc)
            questions.append(question)
            # searchable when add_document returns
            answer, snapshot = recorder.ask(engine, question, filters=Filters(doc_ids=(doc.doc_id,)))
            check_consistent(answer, snapshot)
            assert doc.doc_id in {h.chunk.doc_id for h in answer.hits}, (doc.doc_id, answer.reason)
            live.append(doc.doc_id)
            if i % 3 == 1:  # replace one: questions asked afterwards see only the new text
                again, _ = new_document(rng, pool, doc.doc_id)
                digest = article_hash(stored_article(again))
                engine.add_document(again)
                replaced_at[doc.doc_id] = (time.monotonic(), digest)
            if i % 2 == 1:
                victim = live.pop(rng.randrange(len(live)))
                engine.delete_document(victim)
                deleted_at[victim] = time.monotonic()

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        while not writers_done.is_set() or answered[0] < 30:
            asked_at = time.monotonic()
            answer, snapshot = recorder.ask(engine, rng.choice(questions), top_k=10)
            check_consistent(answer, snapshot)
            for doc_id, when in list(deleted_at.items()):
                if when < asked_at:
                    assert doc_id not in snapshot.index.articles, f"{doc_id} deleted, still in the snapshot"
            for hit in answer.hits:
                when = deleted_at.get(hit.chunk.doc_id)
                assert when is None or when >= asked_at, f"{hit.chunk.doc_id} cited after its delete returned"
            for doc_id, (when, digest) in list(replaced_at.items()):
                if when < asked_at and doc_id in snapshot.index.articles:
                    assert snapshot.index.hashes[doc_id] == digest, f"{doc_id}: the replaced text is back"
            answered[0] += 1
            time.sleep(0.01)  # leave the writers some of the GIL

    def writers() -> None:
        try:
            run_threads([lambda: writer("a", 1), lambda: writer("b", 2)])
        finally:
            writers_done.set()

    run_threads([writers, *(lambda s=s: reader(s) for s in (11, 12))])
    assert answered[0] >= 30
    assert index_state(engine) == corpus_state(fake_settings)  # no sync needed: the writes are all in
    assert set(deleted_at).isdisjoint(engine.index.articles)
    fresh = Engine(fake_settings).open(build_if_missing=False)
    assert index_state(fresh) == index_state(engine)
    assert_clean(fake_settings, fresh)


def test_two_engines_in_one_process_share_the_index_folder(fake_settings: Settings) -> None:
    first = Engine(fake_settings).open(show_progress=False)
    second = Engine(fake_settings).open(show_progress=False)
    reader = Engine(fake_settings).open(show_progress=False)
    pool = sentence_pool()
    expected = set(SEED_IDS)
    lock = threading.Lock()
    done = threading.Event()
    loads = [0]

    def writer(engine: Engine, name: str, seed: int) -> None:
        rng = random.Random(seed)
        for i in range(4):
            doc, _ = new_document(rng, pool, f"{name}-{i}")
            engine.add_document(doc)
            with lock:
                expected.add(doc.doc_id)
            if i % 2 == 0:
                engine.delete_document(doc.doc_id)
                with lock:
                    expected.discard(doc.doc_id)
        engine.build(show_progress=False)  # a full sync in between the other engine's writes

    def load_and_ask() -> None:
        while not done.is_set() or loads[0] < 5:
            reader.open(build_if_missing=False)  # never sees a half-removed version
            check_answers(reader, fake_settings)
            loads[0] += 1
            time.sleep(0.01)

    def writers() -> None:
        try:
            run_threads([lambda: writer(first, "one", 1), lambda: writer(second, "two", 2)])
        finally:
            done.set()

    run_threads([writers, load_and_ask])
    corpus = corpus_state(fake_settings)
    assert set(corpus) == expected
    fresh = Engine(fake_settings).open(build_if_missing=False)
    assert index_state(fresh) == corpus  # neither engine dropped the other's documents
    assert_clean(fake_settings, fresh)
    with pytest.raises(DocumentNotFoundError):  # the other engine's delete is seen, not repeated
        first.delete_document("two-0")


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    server = Zygote(tmp_path_factory.mktemp("zygote") / "stderr.txt")
    yield server
    server.close()


def _script(rng: random.Random, pool: list[str], name: str, count: int) -> list[dict[str, Any]]:
    actions: list[dict[str, Any]] = []
    for i in range(count):
        doc, _ = new_document(rng, pool, f"{name}-{i}")
        actions.append({"kind": "add", "doc": {"doc_id": doc.doc_id, "text": doc.text}})
        if i % 3 == 1:
            actions.append({"kind": "delete", "doc_id": doc.doc_id})
        if i % 4 == 2:
            actions.append({"kind": "build"})
    return actions


def _finished(log: Path) -> bool:
    lines = read_log(log)
    return bool(lines) and (lines[-1] == "done" or lines[-1].startswith("error"))


def _outcome(log: Path) -> set[str]:
    """The doc_ids a script left in the corpus, from the results it logged."""
    present: set[str] = set()
    lines = read_log(log)
    assert lines and lines[-1] == "done", lines[-3:]
    for line in lines:
        if line.startswith("result "):
            result = json.loads(line[len("result ") :])
            assert result["ok"], result
            if result["action"] == "add":
                present.add(result["doc_id"])
            elif result["action"] == "delete":
                present.discard(result["doc_id"])
    return present


@pytest.mark.parametrize(
    "rounds", [pytest.param(6, id="quick"), pytest.param(16, id="long", marks=pytest.mark.slow)]
)
def test_two_processes_update_one_index_folder(zygote: Zygote, tmp_path: Path, rounds: int) -> None:
    settings = settings_in(tmp_path)
    reader = Engine(settings).open(show_progress=False)
    zygote.prepare(tmp_path)
    rng = random.Random(rounds)
    pool = sentence_pool()
    logs = [tmp_path / "one.log", tmp_path / "two.log"]
    pids = [
        zygote.start({"kind": "script", "actions": _script(rng, pool, name, rounds), "log": str(log)})
        for name, log in zip(("one", "two"), logs, strict=True)
    ]
    loads = 0
    deadline = time.monotonic() + JOIN
    while not all(_finished(log) for log in logs):
        assert time.monotonic() < deadline, "the writers hung"
        reader.open(build_if_missing=False)  # loads while the other processes publish and remove versions
        check_answers(reader, settings)
        loads += 1
    statuses = [zygote.wait(pid) for pid in pids]
    assert all(s.get("exit") == 0 for s in statuses), (statuses, zygote.stderr())
    expected = SEED_IDS | _outcome(logs[0]) | _outcome(logs[1])
    corpus = corpus_state(settings)
    assert set(corpus) == expected
    fresh = Engine(settings).open(build_if_missing=False)
    assert index_state(fresh) == corpus
    assert_clean(settings, fresh)
    assert loads > 0


def test_a_reader_that_loses_the_race_with_a_publish_reads_the_new_version(
    engine: Engine, fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between reading CURRENT and reading the version it names, another writer publishes and removes it."""
    index_dir = fake_settings.index_dir
    old = layout.current_version(index_dir)
    assert old is not None
    newer = index_dir / "v-29990101T000000-00000000"
    shutil.copytree(old, newer)
    real = layout.read_manifest
    segments = layout.manifest_segments(real(old, verify=False))
    raced = []

    def read_manifest(version: Path, *, verify: bool) -> dict[str, Any]:
        if not raced:
            raced.append(version)
            layout.publish(index_dir, newer, segments)  # removes `old`, which this reader is about to read
        return real(version, verify=verify)

    monkeypatch.setattr(layout, "read_manifest", read_manifest)
    engine.reload()
    assert raced == [old] and not old.exists()
    assert engine.index.version == newer
    check_answers(engine, fake_settings)
