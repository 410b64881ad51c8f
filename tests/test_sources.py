"""A re-index parses only the corpus files that changed: unchanged ones are known by their stat (and,
when only the stat changed, their hash), and a changed one is always parsed again."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qa.config import Settings
from qa.documents import NewDocument
from qa.engine import Engine
from qa.index import sources

QUESTION = "胡志明市与中国多少个地方保持友好合作关系?"


def _settle(corpus: Path) -> None:
    """Date every corpus file a minute back, as files are long after they were written: the record
    trusts a stat only well after the file's last change."""
    past = time.time_ns() - 60_000_000_000
    for path in corpus.iterdir():
        os.utime(path, ns=(past, past))


@pytest.fixture
def settled(fake_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Engine:
    # utime sets the mtime back but the ctime to now, and no program can set it back: trust a stat
    # taken any time after the change (the 2 s window is for coarse file system clocks).
    monkeypatch.setattr(sources, "RACY_NS", 0)
    _settle(fake_settings.corpus_dir)
    engine = Engine(fake_settings).open(show_progress=False)
    engine.build(show_progress=False)  # records the settled files' stats
    return engine


def _parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    parsed: list[str] = []
    real = sources.load_file

    def counting(path: Path, max_bytes: int):  # type: ignore[no-untyped-def]
        parsed.append(path.name)
        return real(path, max_bytes)

    monkeypatch.setattr(sources, "load_file", counting)
    return parsed


def _seed(settings: Settings) -> Path:
    return sorted(settings.corpus_dir.glob("*.txt"))[0]


def test_an_unchanged_corpus_is_not_parsed(
    settled: Engine, fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = _parsed(monkeypatch)
    report = Engine(fake_settings).build(show_progress=False)  # a new process: `qa index`
    assert parsed == [] and not report.changed and report.unchanged == 5
    assert (report.files_parsed, report.files_hashed) == (0, 0)


def test_a_touched_file_is_hashed_not_parsed(
    settled: Engine, fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = _parsed(monkeypatch)
    _seed(fake_settings).touch()
    report = settled.build(show_progress=False)
    assert parsed == [] and not report.changed and report.files_hashed == 1
    assert settled.build(show_progress=False).files_hashed == 0  # its new stat is recorded


def test_a_file_changed_just_before_its_check_is_hashed_again(
    settled: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the window a change in the same timestamp tick could follow unseen: hashed, never trusted."""
    monkeypatch.setattr(sources, "RACY_NS", 10**15)
    parsed = _parsed(monkeypatch)
    for _ in range(2):
        report = settled.build(show_progress=False)
        assert parsed == [] and not report.changed and report.files_hashed == 5


def test_a_changed_file_is_indexed_again(settled: Engine, fake_settings: Settings) -> None:
    path = _seed(fake_settings)
    path.write_text(
        path.read_text(encoding="utf-8") + "\n芽庄市与昆明市签署友好城市协议。\n", encoding="utf-8"
    )
    report = settled.build(show_progress=False)
    assert report.updated == [path.stem] and report.files_parsed == 1


def test_an_edit_that_keeps_size_and_mtime_is_seen(settled: Engine, fake_settings: Settings) -> None:
    path = _seed(fake_settings)
    before = path.stat()
    text = path.read_text(encoding="utf-8")
    at = text.index("中国")
    path.write_text(text[:at] + "越南" + text[at + 2 :], encoding="utf-8")  # same length in UTF-8
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    report = settled.build(show_progress=False)
    assert report.updated == [path.stem]


def test_a_removed_file_removes_its_articles(settled: Engine, fake_settings: Settings) -> None:
    path = _seed(fake_settings)
    path.unlink()
    report = settled.build(show_progress=False)
    assert report.removed == [path.stem] and path.stem not in settled.index.articles


def test_a_record_the_index_does_not_match_is_not_trusted(
    settled: Engine, fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between publishing and recording leaves an older record: its articles are not the
    index's, so the file is parsed."""
    index_dir = fake_settings.index_dir
    old = (index_dir / sources.SOURCES).read_bytes()
    path = _seed(fake_settings)
    original = path.read_text(encoding="utf-8")
    path.write_text(original + "\n芽庄市与昆明市签署友好城市协议。\n", encoding="utf-8")
    settled.build(show_progress=False)
    changed = settled.ask(QUESTION)
    (index_dir / sources.SOURCES).write_bytes(old)  # as if the build died before recording
    path.write_text(original, encoding="utf-8")  # back to the bytes the old record names
    report = settled.build(show_progress=False)
    assert report.updated == [path.stem]
    path.write_text(original + "\n芽庄市与昆明市签署友好城市协议。\n", encoding="utf-8")
    settled.build(show_progress=False)
    assert settled.ask(QUESTION) == changed


@pytest.mark.parametrize("garbage", [b"", b"not json", b'{"key": 1}', b'{"key": null, "files": []}'])
def test_an_unreadable_record_means_parsing_everything(
    settled: Engine, fake_settings: Settings, monkeypatch: pytest.MonkeyPatch, garbage: bytes
) -> None:
    (fake_settings.index_dir / sources.SOURCES).write_bytes(garbage)
    parsed = _parsed(monkeypatch)
    report = settled.build(show_progress=False)
    assert len(parsed) == 5 and not report.changed


def test_documents_added_through_the_api_are_indexed_once(
    settled: Engine, fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settled.add_document(
        NewDocument(doc_id="api-doc", text="芽庄市与昆明市签署友好城市协议。" * 3, title="t")
    )
    parsed = _parsed(monkeypatch)
    first = settled.build(show_progress=False)  # the document's new JSONL file: read once
    assert not first.changed and parsed == ["api-doc.jsonl"]
    _settle(fake_settings.corpus_dir)
    settled.build(show_progress=False)
    parsed.clear()
    assert not settled.build(show_progress=False).changed and parsed == []
    settled.delete_document("api-doc")
    report = settled.build(show_progress=False)
    assert not report.changed and "api-doc" not in settled.index.articles


def test_a_rebuild_parses_everything(
    settled: Engine, fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = _parsed(monkeypatch)
    settled.build(rebuild=True, show_progress=False)
    assert len(parsed) == 5


def test_other_corpus_settings_ignore_the_record(
    settled: Engine, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = _parsed(monkeypatch)
    Engine(make_settings(corpus={"max_file_bytes": 900_000})).build(show_progress=False)
    assert len(parsed) == 5
    data = json.loads((make_settings().index_dir / sources.SOURCES).read_text(encoding="utf-8"))
    assert len(data["files"]) == 5
