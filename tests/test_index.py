"""The index on disk: round trip, incremental updates, deletes, atomic saves, checksums, mismatches."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qa.config import Settings
from qa.embeddings.encoder import FakeEncoder, Vectors
from qa.engine import Engine
from qa.errors import IndexCorruptError, IndexMismatchError, IndexStoreError
from qa.index import builder, layout
from qa.index.passages import LexicalQuery
from qa.index.search_index import load_index
from tests.conftest import settings_in


class CountingEncoder(FakeEncoder):
    def __init__(self) -> None:
        super().__init__(64)
        self.passages = 0
        self.calls = 0

    @property
    def name(self) -> str:
        return "fake:64"

    def encode_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> Vectors:
        self.passages += len(texts)
        return super().encode_passages(texts)


def test_round_trip(engine: Engine, fake_settings: Settings) -> None:
    again = Engine(fake_settings).open(build_if_missing=False)
    assert len(again.index) == len(engine.index) > 0
    assert again.index.articles.keys() == engine.index.articles.keys()
    for a, b in zip(engine.index.chunks, again.index.chunks, strict=True):
        assert a == b
    assert again.index.manifest is not None
    manifest = again.index.manifest.to_json() | layout.read_manifest(again.index.version, verify=True)
    assert manifest["dense"]["model"] == "fake:64"
    assert manifest["dense"]["dim"] == 64
    c = fake_settings.chunking
    assert manifest["dense"]["chunking"] == {
        "max_chars": c.max_chars,
        "overlap_chars": c.overlap_chars,
        "min_chars": c.min_chars,
    }
    assert manifest["counts"] == {"articles": 5, "passages": len(engine.index)}
    assert "built_at" in manifest and len(manifest["segments"]) == 1
    segment = _segment(fake_settings.index_dir)
    assert "vectors/vectors.npy" in json.loads((segment / layout.SEGMENT_FILE).read_text())["files"]


def test_only_new_or_changed_articles_are_embedded(fake_settings: Settings, corpus_dir: Path) -> None:
    encoder = CountingEncoder()
    eng = Engine(fake_settings, encoder=encoder)
    first = eng.build()
    assert encoder.passages == first.passages
    again = eng.build()
    assert again.encoded == 0 and not again.changed and encoder.passages == first.passages

    path = corpus_dir / "004_9796523c0b21f5fd.txt"
    path.write_text(path.read_text(encoding="utf-8") + "\n\n新增一段关于胡志明市的正文。", encoding="utf-8")
    (corpus_dir / "new.txt").write_text("新文章标题\n\n越南与老挝签署了新的铁路合作协议。", encoding="utf-8")
    before = encoder.passages
    report = eng.build()
    assert report.updated == ["004_9796523c0b21f5fd"] and report.added == ["new"]
    changed = sum(1 for c in eng.index.chunks if c.doc_id in {"004_9796523c0b21f5fd", "new"})
    assert encoder.passages - before == changed
    assert report.unchanged == 4


class BatchDependent(CountingEncoder):
    """As a real model: a passage's vector depends a little on the batch it is encoded in (its padding, an
    int8 model's per-batch scales)."""

    def encode_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> Vectors:
        vectors = super().encode_passages(texts)
        vectors[:, 0] += np.float32(1e-7 * sum(map(len, texts)))
        return np.asarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), dtype=np.float32)


def test_articles_of_the_same_content_are_embedded_once(
    fake_settings: Settings, corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A story filed twice (two ids, one content) costs one embedding, both copies get the same vectors, and
    a rebuild from the embedding cache gives every row the vectors the first build gave it."""
    monkeypatch.setattr(builder, "ENCODE_BATCH", 20)  # the copies fall in batches unlike each other
    original = corpus_dir / "004_9796523c0b21f5fd.txt"
    (corpus_dir / "zz_twin.txt").write_text(original.read_text(encoding="utf-8"), encoding="utf-8")
    encoder = BatchDependent()
    eng = Engine(fake_settings, encoder=encoder)
    report = eng.build()
    rows = eng.index.rows_by_doc
    ours, twin = list(rows["004_9796523c0b21f5fd"]), list(rows["zz_twin"])
    assert eng.index.hashes["zz_twin"] == eng.index.hashes["004_9796523c0b21f5fd"] and len(ours) == len(twin)
    assert encoder.passages == report.encoded == len(eng.index) - len(twin)
    vectors = eng.index.passages.vectors(list(range(len(eng.index))))
    assert np.array_equal(vectors[ours], vectors[twin])
    again = eng.build(rebuild=True)
    assert again.encoded == 0 and encoder.passages == report.encoded
    assert np.array_equal(eng.index.passages.vectors(list(range(len(eng.index)))), vectors)


def test_deleted_article_is_never_cited_again(engine: Engine, corpus_dir: Path) -> None:
    question = "胡志明市副主席杨英德和上海哪位副市长开了视频会议?"
    assert engine.ask(question).hits[0].chunk.doc_id == "004_9796523c0b21f5fd"
    (corpus_dir / "004_9796523c0b21f5fd.txt").unlink()
    report = engine.build()
    assert report.removed == ["004_9796523c0b21f5fd"]
    for hit in engine.ask(question, top_k=50).hits:
        assert hit.chunk.doc_id != "004_9796523c0b21f5fd"
    assert "004_9796523c0b21f5fd" not in engine.index.articles


def test_a_crash_before_publishing_leaves_the_previous_index(
    engine: Engine, fake_settings: Settings, corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = len(engine.index)
    (corpus_dir / "new.txt").write_text("新文章\n\n一段新的正文。", encoding="utf-8")

    def crash(*_: object) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr(layout, "publish", crash)
    with pytest.raises(OSError):
        engine.build()
    monkeypatch.undo()
    reopened = Engine(fake_settings).open(build_if_missing=False)
    assert len(reopened.index) == before and "new" not in reopened.index.articles
    report = reopened.build()  # re-running finishes the job and cleans the leftovers
    assert report.added == ["new"]
    versions = [p for p in fake_settings.index_dir.glob("v-*")]
    assert len(versions) == 1


def test_tampered_or_truncated_files_are_detected(engine: Engine, fake_settings: Settings) -> None:
    chunks = _segment(fake_settings.index_dir) / "table.bin"
    chunks.write_bytes(chunks.read_bytes()[:-40])
    with pytest.raises(IndexCorruptError, match="checksum"):
        Engine(fake_settings).open(build_if_missing=False)
    Engine(fake_settings).build(rebuild=True)  # the way out the message names
    assert Engine(fake_settings).open(build_if_missing=False).index.manifest.counts.articles == 5  # type: ignore[union-attr]
    (_segment(fake_settings.index_dir) / "vectors" / "vectors.npy").unlink()
    with pytest.raises(IndexCorruptError, match="missing"):
        Engine(fake_settings).open(build_if_missing=False)


def test_index_built_with_another_model_or_chunking_is_refused(
    engine: Engine, make_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(IndexMismatchError, match="model"):
        Engine(make_settings(model={"name": "fake:32"})).open(build_if_missing=False)
    with pytest.raises(IndexMismatchError, match="chunking"):
        Engine(make_settings(chunking={"max_chars": 300})).open(build_if_missing=False)
    rebuilt = Engine(make_settings(chunking={"max_chars": 300}))
    rebuilt.build()
    assert rebuilt.index.manifest.key.dense.chunking.max_chars == 300  # type: ignore[union-attr]


def test_missing_index_without_build(fake_settings: Settings) -> None:
    with pytest.raises(IndexStoreError, match="qa index"):
        Engine(fake_settings).open(build_if_missing=False)


def test_empty_corpus_builds_an_empty_index_that_abstains(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    eng = Engine(make_settings(corpus={"dir": str(empty)})).open()
    assert len(eng.index) == 0
    answer = eng.ask("越南与中国的贸易额是多少?")
    assert not answer.answerable and answer.hits == ()


def test_unknown_words_get_a_normal_no_answer(engine: Engine) -> None:
    answer = engine.ask("zzqx qwxv")
    assert not answer.answerable or all(h.chunk.text for h in answer.hits)
    probe = LexicalQuery("zzqx", tuple(engine.tokenizer.tokens("zzqx")))
    lexical_only = engine.index.passages.lexical_search([probe], 5)[0]
    assert lexical_only == []


def test_stale_build_folders_are_removed(engine: Engine, fake_settings: Settings) -> None:
    junk = fake_settings.index_dir / "v-19990101T000000-deadbeef"
    junk.mkdir()
    (junk / "vectors.npy").write_bytes(b"partial")
    engine.build()
    assert not junk.exists()
    assert layout.current_version(fake_settings.index_dir) is not None
    shutil.rmtree(fake_settings.index_dir)
    with pytest.raises(IndexStoreError):
        Engine(fake_settings).open(build_if_missing=False)


def test_a_build_killed_while_embedding_resumes_where_it_stopped(
    fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qa.index import builder

    monkeypatch.setattr(builder, "ENCODE_BATCH", 10)

    class DiesOnThirdBatch(CountingEncoder):
        def encode_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> Vectors:
            if self.passages and self.calls == 2:
                raise KeyboardInterrupt("killed")
            self.calls += 1
            return super().encode_passages(texts)

    dying = DiesOnThirdBatch()
    with pytest.raises(KeyboardInterrupt):
        Engine(fake_settings, encoder=dying).build()
    assert layout.current_version(fake_settings.index_dir) is None  # nothing half-built is published
    done_before = dying.passages

    resumed = CountingEncoder()
    report = Engine(fake_settings, encoder=resumed).build()
    assert report.encoded == resumed.passages == report.passages - done_before
    cache = fake_settings.index_dir / "embedding-cache"
    assert len([p for p in cache.rglob("*.npy")]) == report.articles  # one entry per indexed article


# -- every kind of damaged file is reported, never answered from -----------------------------------------


@pytest.fixture(scope="module")
def built_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("built")
    Engine(settings_in(root)).build(show_progress=False)
    return root


def _live_name(index_dir: Path) -> str:
    pointer = layout.read_pointer(index_dir)
    assert pointer is not None
    return pointer[0]


def _resign(index_dir: Path) -> None:
    """Record the manifest's current checksum in CURRENT, as a consistent (if strange) writer would."""
    version = _live_name(index_dir)
    manifest = index_dir / version / layout.MANIFEST
    (index_dir / layout.CURRENT).write_text(f"{version}\n{layout.sha256_file(manifest)}\n")


def _legacy_pointer(index_dir: Path) -> Path:
    """CURRENT as older versions wrote it (the name only, no manifest checksum); the version folder."""
    name = _live_name(index_dir)
    (index_dir / layout.CURRENT).write_text(name)
    return index_dir / name


def _edit_manifest(index_dir: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    version = _legacy_pointer(index_dir)
    manifest = json.loads((version / layout.MANIFEST).read_text(encoding="utf-8"))
    (version / layout.MANIFEST).write_text(json.dumps(change(manifest)), encoding="utf-8")


def _current(index_dir: Path) -> Path:
    version = layout.current_version(index_dir)
    assert version is not None
    return version


def _segment(index_dir: Path) -> Path:
    """The folder of the live version's first segment."""
    names = layout.manifest_segments(layout.read_manifest(_current(index_dir), verify=False))
    return layout.segment_dir(index_dir, names[0])


def _pointer_damage() -> dict[str, Callable[[Path], None]]:
    def write(data: bytes) -> Callable[[Path], None]:
        return lambda d: (d / layout.CURRENT).write_bytes(data)

    def cut_checksum(d: Path) -> None:
        (d / layout.CURRENT).write_bytes((d / layout.CURRENT).read_bytes().rstrip()[:-10])

    def other_checksum(d: Path) -> None:
        name = _live_name(d)
        (d / layout.CURRENT).write_text(f"{name}\n{'0' * 64}\n")

    def directory(d: Path) -> None:
        (d / layout.CURRENT).unlink()
        (d / layout.CURRENT).mkdir()

    return {
        "CURRENT garbage": write(b"garbage"),
        "CURRENT empty": write(b""),
        "CURRENT not UTF-8": write(b"\xff\xfe\x00v-"),
        "CURRENT path outside": write(b"v-../../etc\n"),
        "CURRENT names a missing version": write(b"v-20000101T000000-deadbeef\n"),
        "CURRENT checksum cut": cut_checksum,
        "CURRENT other checksum": other_checksum,
        "CURRENT a directory": directory,
    }


def _manifest_damage() -> dict[str, Callable[[Path], None]]:
    def manifest(d: Path) -> Path:
        return _current(d) / layout.MANIFEST

    def bad_files(d: Path) -> None:
        _edit_manifest(d, lambda m: {**m, "files": ["vectors.npy"]})

    def outside(d: Path) -> None:
        _edit_manifest(d, lambda m: {**m, "files": {**m["files"], "../CURRENT": "0" * 64}})

    def missing_segment(d: Path) -> None:
        shutil.rmtree(_segment(d))

    def segment_record_edited(d: Path) -> None:
        record = _segment(d) / layout.SEGMENT_FILE
        record.write_bytes(record.read_bytes().replace(b'"rows"', b'"rowz"'))

    def other_segment(d: Path) -> None:
        _edit_manifest(d, lambda m: {**m, "segments": [{**m["segments"][0], "name": "s-19990101-0"}]})

    def counts(d: Path) -> None:
        _edit_manifest(d, lambda m: {**m, "counts": {**m["counts"], "passages": m["counts"]["passages"] + 1}})
        _resign(d)

    def legacy_not_json(d: Path) -> None:
        (_legacy_pointer(d) / layout.MANIFEST).write_bytes(b"{not json")

    return {
        "manifest not JSON": lambda d: manifest(d).write_bytes(b"{not json"),
        "manifest truncated": lambda d: manifest(d).write_bytes(manifest(d).read_bytes()[:100]),
        "manifest edited": lambda d: manifest(d).write_bytes(
            manifest(d).read_bytes().replace(b"fake", b"f4ke")
        ),
        "manifest removed": lambda d: manifest(d).unlink(),
        "manifest not JSON (legacy CURRENT)": legacy_not_json,
        "manifest a list (legacy CURRENT)": lambda d: _edit_manifest(d, lambda m: [m]),
        "manifest files not a dict (legacy CURRENT)": bad_files,
        "manifest lists a file outside (legacy CURRENT)": outside,
        "manifest counts wrong (re-signed)": counts,
        "segment folder removed": missing_segment,
        "segment record edited": segment_record_edited,
        "manifest names another segment (legacy CURRENT)": other_segment,
    }


def _file_damage(name: str) -> dict[str, Callable[[Path], None]]:
    def truncate(d: Path) -> None:
        path = _segment(d) / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    def flip(d: Path) -> None:
        path = _segment(d) / name
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    return {
        f"{name} truncated": truncate,
        f"{name} one bit flipped": flip,
        f"{name} removed": lambda d: (_segment(d) / name).unlink(),
    }


INDEX_FILES = [
    "table.bin",
    "vectors/vectors.npy",
    "vectors/store.json",
    "lexical/indptr.npy",
    "lexical/rows.npy",
    "lexical/tf.npy",
    "lexical/lengths.npy",
    "lexical/term_hashes.npy",
    "lexical/terms.npy",
    "lexical/term_offsets.npy",
]
DAMAGE = {
    **_pointer_damage(),
    **_manifest_damage(),
    **{case: damage for name in INDEX_FILES for case, damage in _file_damage(name).items()},
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_every_kind_of_damaged_file_is_detected(case: str, built_index: Path, tmp_path: Path) -> None:
    shutil.copytree(built_index / "index", tmp_path / "index")
    settings = settings_in(tmp_path, corpus={"dir": str(built_index / "corpus")})
    reference = Engine(settings)
    segment = _segment(settings.index_dir)
    assert {p for p in segment.rglob("*") if p.is_file()} == {
        segment / name for name in [*INDEX_FILES, layout.SEGMENT_FILE]
    }
    DAMAGE[case](settings.index_dir)
    with pytest.raises(IndexCorruptError, match="qa index --rebuild"):
        load_index(settings.index_dir, reference.index_key(), reference.indexing.backend)
    with pytest.raises(IndexStoreError):  # not rebuilt silently over the damage, not answered from
        Engine(settings).open(show_progress=False)


def test_a_pointer_without_checksum_from_an_older_version_still_loads(
    engine: Engine, fake_settings: Settings
) -> None:
    _legacy_pointer(fake_settings.index_dir)
    again = Engine(fake_settings).open(build_if_missing=False)
    assert again.index.hashes == engine.index.hashes
    question = "胡志明市副主席杨英德和上海哪位副市长开了视频会议?"
    assert again.ask(question).hits == engine.ask(question).hits


def test_a_damaged_index_is_repaired_by_the_build_its_message_names(
    engine: Engine, fake_settings: Settings
) -> None:
    index_dir = fake_settings.index_dir
    for case in (
        "CURRENT garbage",
        "manifest not JSON",
        "lexical/terms.npy removed",
        "segment folder removed",
        "table.bin truncated",
    ):
        DAMAGE[case](index_dir)
        with pytest.raises(IndexCorruptError):
            Engine(fake_settings).open(build_if_missing=False)
        engine.build(rebuild=True, show_progress=False)
        assert Engine(fake_settings).open(build_if_missing=False).index.hashes == engine.index.hashes
        assert len(list(index_dir.glob("v-*"))) == 1, case


def test_the_manifest_round_trips_and_names_what_differs(engine: Engine) -> None:
    from qa.index.manifest import Manifest

    manifest = engine.index.manifest
    assert manifest is not None
    assert Manifest.from_json(json.loads(json.dumps(manifest.to_json()))) == manifest
    old = manifest.to_json()
    del old["dense"]["precision"]  # as written before the precision was recorded
    with pytest.raises(
        IndexMismatchError, match=r"built with precision=None but .* asks for precision='fp32'"
    ):
        engine.index_key().check(Manifest.from_json(old))
    milvus = Manifest.from_json(
        old | {"dense": {**manifest.to_json()["dense"], "milvus": {"collection": "c"}}}
    )
    assert milvus.key.dense.collection == "c"
    with pytest.raises(IndexMismatchError, match="milvus"):
        engine.index_key().check(milvus)
