"""Reading a corpus folder: every format, and bad files reported and skipped, never fatal."""

from __future__ import annotations

import json
from pathlib import Path

from qa.ingest.loader import load_corpus
from qa.records import Section

PATTERNS = ("*.txt", "*.md", "*.jsonl")


def load(folder: Path, max_bytes: int = 1_000_000):  # type: ignore[no-untyped-def]
    return load_corpus(folder, PATTERNS, max_bytes)


def test_seed_corpus_loads_completely(corpus_dir: Path) -> None:
    report = load(corpus_dir)
    assert len(report.articles) == 5
    assert report.skipped == []


def test_bad_files_are_reported_and_the_rest_loads(corpus_dir: Path) -> None:
    (corpus_dir / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (corpus_dir / "latin1.txt").write_bytes("标题\n正文".encode("gb18030"))
    (corpus_dir / "empty.txt").write_text("   \n", encoding="utf-8")
    (corpus_dir / "big.txt").write_text("大" * 400_000, encoding="utf-8")
    (corpus_dir / "only-junk.txt").write_text("标题\n\nanh-3.png\n新闻\n", encoding="utf-8")
    (corpus_dir / ".hidden-name.txt").write_text("标题\n正文。", encoding="utf-8")
    report = load(corpus_dir)
    assert len(report.articles) == 5
    reasons = {Path(e.path).name: e.reason for e in report.skipped}
    assert "binary" in reasons["binary.txt"]
    assert "UTF-8" in reasons["latin1.txt"]
    assert "empty" in reasons["empty.txt"]
    assert "limit" in reasons["big.txt"]
    assert "no article text" in reasons["only-junk.txt"]
    assert "doc_id" in reasons[".hidden-name.txt"]


def test_crlf_offsets_match_what_open_reads(tmp_path: Path) -> None:
    (tmp_path / "crlf.txt").write_bytes(
        "标题\r\n\r\n15:44 | 21/01/2025\r\n\r\n第一段。\r\n第二段。\r\n".encode()
    )
    article = load(tmp_path).articles[0]
    with open(tmp_path / "crlf.txt", encoding="utf-8") as handle:
        text = handle.read()
    assert article.text == text
    assert article.date == "2025-01-21"
    assert [text[s.start : s.end] for s in article.segments] == ["第一段。\n第二段。"]


def test_markdown_title(tmp_path: Path) -> None:
    (tmp_path / "note.md").write_text("# 越南与中国的合作\n\n双方签署了协议。", encoding="utf-8")
    article = load(tmp_path).articles[0]
    assert article.title == "越南与中国的合作"
    assert article.doc_id == "note"


def test_jsonl_bulk_import(tmp_path: Path) -> None:
    records = [
        {
            "id": "a1",
            "title": "标题一",
            "date": "2025-03-01",
            "text": "标题一\n正文第一句。第二句。",
            "url": "http://x/1",
        },
        {"id": "a2", "title": "标题二", "date": "not a date", "text": "另一篇的正文。"},
        {"id": "../evil", "title": "x", "text": "正文。"},
        {"id": "a3", "title": "无正文", "text": ""},
        "not an object",
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in records] + ["{broken json"]
    (tmp_path / "bulk.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = load(tmp_path)
    by_id = {a.doc_id: a for a in report.articles}
    assert set(by_id) == {"a1", "a2"}
    a1 = by_id["a1"]
    assert (a1.title, a1.date, a1.url) == ("标题一", "2025-03-01", "http://x/1")
    assert [a1.segment_text(s) for s in a1.segments] == ["正文第一句。第二句。"]
    assert a1.segments[0].section is Section.BODY
    assert by_id["a2"].date is None  # a bad date is never guessed
    assert len(report.skipped) == 4
    assert all(e.path.startswith(str(tmp_path / "bulk.jsonl") + ":") for e in report.skipped)


def test_duplicate_doc_id_is_reported(tmp_path: Path) -> None:
    (tmp_path / "same.txt").write_text("标题\n正文。", encoding="utf-8")
    (tmp_path / "bulk.jsonl").write_text(
        json.dumps({"id": "same", "text": "另一篇。"}) + "\n", encoding="utf-8"
    )
    report = load(tmp_path)
    assert len(report.articles) == 1
    assert "already used" in report.skipped[0].reason
