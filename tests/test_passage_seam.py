"""The seam between the index and the engines that hold its passages (qa.index.passages).

Everything the engine does with passages goes through ``PassageBackend`` and ``PassageIndex``: a backend
of one's own (here one that records every call, over the local one) serves the whole service, and gives
the same answers as the configured backend. And no module outside the backends knows which one is used.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from qa.config import Settings
from qa.documents import NewDocument
from qa.embeddings.encoder import Vectors
from qa.engine import Engine, Filters
from qa.index.local_passages import LocalBackend
from qa.index.manifest import Manifest
from qa.index.passages import (
    FusedHit,
    LexicalQuery,
    Mask,
    PassageBackend,
    PassageFilter,
    PassageIndex,
    PassageWrite,
    Rows,
    SnapshotRows,
    passage_backend,
)
from qa.records import Answer
from tests.conftest import ROOT
from tests.test_layers import imported

QUESTIONS = ["越南与中国的贸易额是多少?", "胡志明市与中国多少个地方保持友好合作关系?", "熊猫幼崽叫什么名字?"]
DOC = NewDocument(
    "zz_panda_001",
    "熊猫保护中心迎来新成员\n\n四川卧龙熊猫保护中心今天宣布，一只名叫团圆的大熊猫幼崽顺利出生。\n"
    "保护中心主任说，团圆体重约一百五十克，健康状况良好。",
    date="2025-02-03",
)


class RecordingPassages:
    """A PassageIndex that records each call and answers from the one it wraps."""

    def __init__(self, inner: PassageIndex, calls: list[str]) -> None:
        self.inner, self.calls = inner, calls

    @property
    def dim(self) -> int:
        return self.inner.dim

    def __len__(self) -> int:
        return len(self.inner)

    def dense_search(
        self, queries: Vectors, k: int, allowed: Mask | None = None, where: PassageFilter | None = None
    ) -> list[Rows]:
        self.calls.append("dense_search" + ("+filter" if where is not None else ""))
        return self.inner.dense_search(queries, k, allowed, where)

    def lexical_search(
        self,
        queries: Sequence[LexicalQuery],
        k: int,
        allowed: Mask | None = None,
        where: PassageFilter | None = None,
    ) -> list[Rows]:
        self.calls.append(f"lexical_search×{len(queries)}")
        return self.inner.lexical_search(queries, k, allowed, where)

    def hybrid_search(
        self,
        vector: Vectors,
        query: LexicalQuery,
        k: int,
        *,
        candidates: int,
        rrf_k: int,
        allowed: Mask | None = None,
        where: PassageFilter | None = None,
    ) -> list[FusedHit] | None:
        self.calls.append("hybrid_search")
        return self.inner.hybrid_search(
            vector, query, k, candidates=candidates, rrf_k=rrf_k, allowed=allowed, where=where
        )

    def vectors(self, rows: Sequence[int]) -> Vectors:
        self.calls.append("vectors")
        return self.inner.vectors(rows)

    def knows(self, token: str) -> bool:
        return self.inner.knows(token)

    def document_frequency(self, token: str) -> int:
        return self.inner.document_frequency(token)


class RecordingBackend:
    """A PassageBackend over the local one that records each call."""

    def __init__(self) -> None:
        self.inner = LocalBackend()
        self.calls: list[str] = []

    @property
    def collection(self) -> str | None:
        return None

    def _unwrap(self, passages: PassageIndex | None) -> PassageIndex | None:
        return passages.inner if isinstance(passages, RecordingPassages) else passages

    def open(
        self, version: Path, manifest: Manifest, rows: SnapshotRows, previous: PassageIndex | None = None
    ) -> PassageIndex:
        self.calls.append("open")
        return RecordingPassages(self.inner.open(version, manifest, rows, self._unwrap(previous)), self.calls)

    def write(self, previous: PassageIndex | None, change: PassageWrite) -> None:
        self.calls.append(f"write:{len(change.texts)} new,{len(change.carried)} carried")
        self.inner.write(self._unwrap(previous), change)

    def published(self, previous: PassageIndex | None, current: PassageIndex) -> None:
        self.calls.append("published")
        self.inner.published(self._unwrap(previous), self._unwrap(current) or current)

    def close(self) -> None:
        self.calls.append("close")


def writes(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith(("write:", "published"))]


def cited(answer: Answer) -> list[tuple[str, int, int]]:
    return [(h.chunk.doc_id, h.chunk.start, h.chunk.end) for h in answer.hits]


def test_a_backend_of_ones_own_serves_the_whole_service(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    plain = Engine(make_settings(index={"dir": str(tmp_path / "plain")})).open(show_progress=False)
    backend = RecordingBackend()
    engine = Engine(make_settings(), backend=backend).open(show_progress=False)
    # built (the seeds' 97 passages into one segment), opened, published, then served as it was opened
    assert backend.calls == ["write:97 new,0 carried", "open", "published"], backend.calls

    for question in QUESTIONS:
        assert cited(engine.ask(question, top_k=5)) == cited(plain.ask(question, top_k=5)), question
    assert {"hybrid_search", "dense_search", "lexical_search×1", "vectors"} <= set(backend.calls)

    backend.calls.clear()
    engine.ask("他是谁?", history=["广西壮族自治区党委书记是谁?"])
    assert "lexical_search×2" in backend.calls  # the question, and the question with its history
    engine.ask(QUESTIONS[0], filters=Filters(date_from="2025-01-01"))
    assert "dense_search+filter" in backend.calls  # the filter reaches the backend as fields too

    backend.calls.clear()
    engine.add_document(DOC)  # a segment of its own passage: the seeds' are neither read nor written
    assert writes(backend.calls) == ["write:1 new,0 carried", "published"], backend.calls
    assert engine.ask("大熊猫幼崽叫什么名字?").hits[0].chunk.doc_id == DOC.doc_id
    backend.calls.clear()
    engine.delete_document(DOC.doc_id)  # a tombstone: nothing written but the version
    assert writes(backend.calls) == ["published"], backend.calls

    restarted = Engine(make_settings(), backend=RecordingBackend()).open(build_if_missing=False)
    assert cited(restarted.ask(QUESTIONS[0])) == cited(plain.ask(QUESTIONS[0]))
    engine.close()
    assert backend.calls[-1] == "close"
    engine.reload()  # used again after close: the caller's backend again, not the configured one
    assert backend.calls[-1] == "open"


def test_the_factory_makes_the_configured_backend(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    local = make_settings().vector_store
    assert isinstance(passage_backend(local, 64, tmp_path), LocalBackend)
    milvus = local.model_copy(update={"backend": "milvus", "uri": "milvus.db", "collection": "c1"})
    backend: PassageBackend = passage_backend(milvus, 64, tmp_path)
    assert backend.collection == "c1"
    assert backend.uri == str(tmp_path / "milvus.db")  # type: ignore[attr-defined]
    backend.close()  # never connected: nothing to release


# Only the backends (and the factory that picks one) know the engines that hold passages.
BACKEND_MODULES = (
    "qa.embeddings.vector_store",
    "qa.embeddings.ann",
    "qa.embeddings.milvus_store",
    "qa.text.segment_bm25",
    "qa.index.local_passages",
    "qa.index.milvus_passages",
)
BACKEND_FILES = {
    "qa/index/passages.py",
    "qa/index/local_passages.py",
    "qa/index/milvus_passages.py",
    "qa/text/segment_bm25.py",  # the local backend's lexical engine
}
CONFIG_FILE = "qa/config.py"  # turns vector_store settings into the FAISS store's parameters


def backend_leaks(path: Path, package: str) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    leaks = [name for name in imported(path, package) if name.startswith(BACKEND_MODULES)]
    leaks += [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and any(isinstance(c, ast.Constant) and c.value in {"milvus", "faiss"} for c in node.comparators)
    ]
    return leaks


def test_no_module_outside_the_backends_knows_which_backend_is_used() -> None:
    found = {}
    for path in sorted((ROOT / "qa").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in BACKEND_FILES:
            continue
        leaks = backend_leaks(path, ".".join(path.relative_to(ROOT).parts[:-1]))
        if rel == CONFIG_FILE:
            leaks = [
                n for n in leaks if not n.startswith(("qa.embeddings.vector_store", "qa.embeddings.ann"))
            ]
            leaks = [n for n in leaks if "self.backend ==" not in n]  # its own validation of the uri
        if leaks:
            found[rel] = leaks
    assert not found, found


@pytest.mark.parametrize(
    "source",
    [
        "from qa.index.milvus_passages import MilvusPassages\n",
        "def f(v):\n    return v.backend == 'milvus'\n",
        "from qa.embeddings import milvus_store\n",
    ],
)
def test_the_leak_checker_sees_a_leak(tmp_path: Path, source: str) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(source, encoding="utf-8")
    assert backend_leaks(probe, "qa")
