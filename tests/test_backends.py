"""One suite for every vector store backend: FAISS (embedded) and Milvus (Milvus Lite, a local process).

Each test runs the engine end to end over a copy of the seeds with the fake encoder: add, replace,
delete, search, filters by date and doc_id, persistence across a restart, and citation offsets that
point into the source files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from qa.config import Settings
from qa.documents import NewDocument
from qa.embeddings.milvus_store import Passage
from qa.engine import Engine, Filters
from qa.errors import IndexMismatchError
from qa.index.milvus_passages import MilvusPassages
from qa.records import Answer
from tests.conftest import seed_text

BACKENDS = ["faiss", "milvus"]
TRADE = "越南与中国的贸易额是多少?"
NEW_DOC = NewDocument(
    "zz_panda_001",
    "熊猫保护中心迎来新成员\n\n四川卧龙熊猫保护中心今天宣布，一只名叫团圆的大熊猫幼崽顺利出生。\n"
    "保护中心主任说，团圆体重约一百五十克，健康状况良好。",
    date="2025-02-03",
)
REPLACED = NewDocument(
    "zz_panda_001",
    "熊猫保护中心更正消息\n\n四川卧龙熊猫保护中心更正说，幼崽的名字是平安，不是此前报道的名字。\n"
    "平安由饲养员全天照顾。",
    date="2025-02-04",
)


def backend_settings(make_settings: Callable[..., Settings], root: Path, backend: str) -> Settings:
    return make_settings(vector_store={"backend": backend, "uri": str(root / "milvus.db")})


@pytest.fixture(params=BACKENDS)
def settings(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings], tmp_path: Path
) -> Settings:
    return backend_settings(make_settings, tmp_path, request.param)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = Engine(settings).open(show_progress=False)
    try:
        yield engine
    finally:
        engine.close()


def cited_correctly(engine: Engine, answer: Answer) -> bool:
    """Every passage's span is the passage's text in its source (the seed file, or the stored article)."""
    for hit in answer.hits:
        c = hit.chunk
        source = engine.index.articles[c.doc_id].text
        if c.doc_id[:3].isdigit():
            source = seed_text(c.doc_id)
        if source[c.start : c.end] != c.text:
            return False
    return True


def docs(answer: Answer) -> set[str]:
    return {h.chunk.doc_id for h in answer.hits}


def milvus_holds_exactly_the_snapshot(engine: Engine) -> bool:
    store = engine.index.passages
    if not isinstance(store, MilvusPassages):
        return True
    return store.store.count() == len(engine.index) and set(store.store.keys()) == set(store.keys)


def test_search_finds_the_answer_with_exact_offsets(engine: Engine) -> None:
    answer = engine.ask(TRADE, top_k=5)
    assert answer.answerable and len(answer.hits) == 5
    assert any("贸易" in h.chunk.text for h in answer.hits)
    assert cited_correctly(engine, answer)
    assert milvus_holds_exactly_the_snapshot(engine)


def test_add_replace_delete(engine: Engine) -> None:
    engine.add_document(NEW_DOC)
    added = engine.ask("大熊猫幼崽叫什么名字?", top_k=3)
    assert added.hits[0].chunk.doc_id == NEW_DOC.doc_id and "团圆" in added.hits[0].chunk.text
    assert cited_correctly(engine, added)

    engine.add_document(REPLACED)
    replaced = engine.ask("大熊猫幼崽叫什么名字?", top_k=10)
    texts = [h.chunk.text for h in replaced.hits if h.chunk.doc_id == NEW_DOC.doc_id]
    assert texts and any("平安" in t for t in texts) and not any("团圆" in t for t in texts)
    assert cited_correctly(engine, replaced)
    assert milvus_holds_exactly_the_snapshot(engine)

    engine.delete_document(NEW_DOC.doc_id)
    gone = engine.ask("大熊猫幼崽叫什么名字?", top_k=10)
    assert NEW_DOC.doc_id not in docs(gone)
    assert milvus_holds_exactly_the_snapshot(engine)


def test_filters_by_doc_id_and_date(engine: Engine) -> None:
    only = engine.ask(TRADE, filters=Filters(doc_ids=("003_de8d194c5a4a5bf1",)), top_k=10)
    assert only.hits and docs(only) == {"003_de8d194c5a4a5bf1"}
    recent = engine.ask("越南与中国的关系", filters=Filters(date_from="2025-01-01"), top_k=20)
    assert recent.hits and docs(recent) <= {"000_a2194725df4ab5f6", "001_53bd41b2b23f3bca"}
    old = engine.ask("越南与中国的关系", filters=Filters(date_to="2024-01-01"), top_k=20)
    assert docs(old) == {"002_714598442bb43c6e"}
    window = Filters(date_from="2025-01-15", date_to="2025-01-31")
    assert docs(engine.ask("越南与中国的关系", filters=window, top_k=20)) == {"000_a2194725df4ab5f6"}
    nothing = engine.ask("越南与中国的关系", filters=Filters(doc_ids=("no-such-doc",)))
    assert not nothing.answerable and nothing.hits == ()
    quoted = engine.ask("越南与中国的关系", filters=Filters(doc_ids=('a"] or doc_id != "x',)))
    assert quoted.hits == ()  # a doc_id is a value, never part of the filter expression


def test_restart_keeps_everything_and_sends_nothing_again(settings: Settings) -> None:
    first = Engine(settings).open(show_progress=False)
    try:
        first.add_document(NEW_DOC)
        before = first.ask("大熊猫幼崽叫什么名字?", top_k=5)
    finally:
        first.close()
    second = Engine(settings).open(build_if_missing=False, show_progress=False)
    try:
        after = second.ask("大熊猫幼崽叫什么名字?", top_k=5)
        assert [(h.chunk.doc_id, h.chunk.start, h.chunk.end) for h in after.hits] == [
            (h.chunk.doc_id, h.chunk.start, h.chunk.end) for h in before.hits
        ]
        assert cited_correctly(second, after)
        report = second.build(show_progress=False)
        assert not report.changed and report.encoded == 0
        assert milvus_holds_exactly_the_snapshot(second)
    finally:
        second.close()


@pytest.mark.slow
def test_an_index_built_for_one_backend_is_not_loaded_with_the_other(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    milvus = Engine(backend_settings(make_settings, tmp_path, "milvus")).open(show_progress=False)
    milvus.close()
    faiss = Engine(backend_settings(make_settings, tmp_path, "faiss"))
    with pytest.raises(IndexMismatchError):
        faiss.open(build_if_missing=False)
    faiss.build(show_progress=False)  # switching rebuilds the snapshot; vectors come from the cache
    assert faiss.ask(TRADE).hits
    again = Engine(backend_settings(make_settings, tmp_path, "milvus"))
    try:
        with pytest.raises(IndexMismatchError):
            again.open(build_if_missing=False)
        report = again.build(show_progress=False)
        assert report.encoded == 0
        assert milvus_holds_exactly_the_snapshot(again)
    finally:
        again.close()


@pytest.mark.slow
def test_rebuild_and_local_fusion_match(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings(
        vector_store={"backend": "milvus", "uri": str(tmp_path / "milvus.db"), "hybrid": False}
    )
    engine = Engine(settings).open(show_progress=False)
    try:
        engine.build(rebuild=True, show_progress=False)
        assert milvus_holds_exactly_the_snapshot(engine)
        # what a build that died between its insert and its publish leaves: gone after the next write
        passages = engine.index.passages
        assert isinstance(passages, MilvusPassages)
        remote = passages.store
        stray = Passage("stray:0:4", "stray", "", "body", 0, 4, "孤儿段落")
        remote.upsert([stray], np.ones((1, remote.dim), np.float32))
        engine.add_document(NEW_DOC)
        assert milvus_holds_exactly_the_snapshot(engine)
        answer = engine.ask(TRADE, history=["广西壮族自治区党委书记是谁?"], top_k=5)
        assert answer.hits and cited_correctly(engine, answer)
        assert any("bm25" in w for h in answer.hits for w in h.why)
    finally:
        engine.close()
