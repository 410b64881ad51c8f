"""Dates as Chinese news pages, feeds and page metadata write them; never an invented one."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from qa.ingest.dates import dateline_date, parse_date, since_date
from qa.ingest.loader import load_corpus
from qa.ingest.newspage import parse_page
from tests.conftest import SEEDS

# What the seeds gave before the new formats (two of them state no date and stay undated).
SEED_DATES = {
    "000_a2194725df4ab5f6": "2025-01-21",
    "001_53bd41b2b23f3bca": "2025-01-10",
    "002_714598442bb43c6e": "2023-12-11",
    "003_de8d194c5a4a5bf1": None,
    "004_9796523c0b21f5fd": None,
}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("2025年01月21日", "2025-01-21"),
        ("2025年1月21日 15:44", "2025-01-21"),
        ("2025 年 1 月 21 日 星期二", "2025-01-21"),
        ("2025-01-21 15:44", "2025-01-21"),
        ("2025-01-21T15:44:00+07:00", "2025-01-21"),
        ("2025/1/21", "2025-01-21"),
        ("21-01-2025", "2025-01-21"),
        ("21/01/2025 15:44", "2025-01-21"),
        ("15:44 | 21/01/2025", "2025-01-21"),
        ("发布时间：2025-01-21 15:44", "2025-01-21"),
        ("发布时间: 2025年01月21日 15:44 来源：越通社", "2025-01-21"),
        ("日期：2025.01.21", "2025-01-21"),
        ("２０２５年１月２１日", "2025-01-21"),  # full-width digits
        ("2025年2月30日", None),  # no such day
        ("31-02-2025", None),
        ("2025-01-21 25:00", None),
        ("2025年1月21日,胡志明市人民委员会举行仪式。", None),  # a sentence, not a dateline
        ("1月20日", None),  # no year: never guessed
        ("胡志明市", None),
    ],
)
def test_dateline(line: str, expected: str | None) -> None:
    assert dateline_date(line) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-01-21T15:44:00+07:00", "2025-01-21"),
        ("2025-01-21", "2025-01-21"),
        ("2025年1月21日 15:44", "2025-01-21"),
        ("Tue, 21 Jan 2025 23:30:00 +0700", "2025-01-21"),  # its own day, not shifted to UTC
        ("January 21, 2025", "2025-01-21"),  # dateparser
        ("21 tháng 1 năm 2025", "2025-01-21"),  # dateparser, Vietnamese
        ("yesterday", None),
        ("3 days ago", None),
        ("昨天", None),
        ("January 2025", None),  # no day
        ("", None),
        (None, None),
        (20250121, None),
    ],
)
def test_metadata_values(value: object, expected: str | None) -> None:
    assert parse_date(value) == expected


def test_page_dates_in_every_format_and_dateline_dropped() -> None:
    for line in ("2025年01月21日 15:44", "发布时间：2025-01-21 15:44", "21-01-2025"):
        text = f"标题在这里\n\n{line}\n\n第一段正文,说明了事情。\n第二段正文。"
        article = parse_page(text, doc_id="x", source="x.txt")
        assert article.date == "2025-01-21", line
        body = "".join(article.segment_text(s) for s in article.segments)
        assert line not in body  # a dateline is not passage text


def test_undated_page_stays_undated() -> None:
    text = "标题在这里\n\n1月20日,胡志明市举行仪式。\n2024年,两国贸易额创新高。"
    assert parse_page(text, doc_id="x", source="x.txt").date is None


def test_seed_dates_unchanged() -> None:
    report = load_corpus(SEEDS, ["*.txt"], 10**8)
    assert {a.doc_id: a.date for a in report.articles} == SEED_DATES


def test_jsonl_dates_in_chinese_formats(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "title": "甲", "date": "2025年1月21日", "text": "正文第一句话,很长的一句话。"},
        {"id": "b", "title": "乙", "date": "21-01-2025", "text": "正文第一句话,很长的一句话。"},
        {"id": "c", "title": "丙", "date": "不知道", "text": "正文第一句话,很长的一句话。"},
    ]
    (tmp_path / "bulk.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    report = load_corpus(tmp_path, ["*.jsonl"], 10**8)
    assert {a.doc_id: a.date for a in report.articles} == {"a": "2025-01-21", "b": "2025-01-21", "c": None}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7d", "2025-01-14"),
        ("2w", "2025-01-07"),
        ("1m", "2024-12-22"),
        ("1y", "2024-01-22"),
        ("2024-12-01", "2024-12-01"),
    ],
)
def test_since(value: str, expected: str) -> None:
    assert since_date(value, today=date(2025, 1, 21)) == expected


@pytest.mark.parametrize("value", ["7", "d7", "7 days", "2024-02-30", "", "-3d"])
def test_since_refuses(value: str) -> None:
    with pytest.raises(ValueError, match="7d"):
        since_date(value, today=date(2025, 1, 21))
