"""Parsing of each seed page: title, date, body vs related, boilerplate gone."""

from __future__ import annotations

import itertools

import pytest

from qa.ingest.newspage import doubled_title, is_link_list, parse_dateline, parse_page
from qa.records import Article, Section
from tests.conftest import seed_text

SEEDS = {
    "000_a2194725df4ab5f6": ("胡志明市将努力巩固和发展与中国8个友好合作城市的友好关系", "2025-01-21"),
    "001_53bd41b2b23f3bca": ("推进双边合作 迈向越中建交75周年纪念", "2025-01-10"),
    "002_714598442bb43c6e": ("越中关系在积极有利的基础上发展", "2023-12-11"),
    "003_de8d194c5a4a5bf1": ("越南河内高级代表团对中国广东省进行访问", None),
    "004_9796523c0b21f5fd": ("促进胡志明市与中国上海市之间的合作", None),
}


def parse(doc_id: str) -> Article:
    return parse_page(seed_text(doc_id), doc_id=doc_id, source=f"seeds/{doc_id}.txt")


def section_text(article: Article, section: Section) -> str:
    return "\n".join(article.segment_text(s) for s in article.segments if s.section is section)


@pytest.mark.parametrize("doc_id", sorted(SEEDS))
def test_title_and_date(doc_id: str) -> None:
    article = parse(doc_id)
    assert (article.title, article.date) == SEEDS[doc_id]
    assert article.doc_id == doc_id


@pytest.mark.parametrize("doc_id", sorted(SEEDS))
def test_boilerplate_is_gone_and_segments_are_exact(doc_id: str) -> None:
    article = parse(doc_id)
    kept = section_text(article, Section.BODY) + section_text(article, Section.RELATED)
    for junk in ("图自", "anh-3.png", "hanoimoi.com.vn", "相关新闻", "查看更多", ":44 | "):
        assert junk not in kept
    for line in kept.split("\n"):
        assert line.strip() not in {"新闻", "越通社", "更多"}
    for segment in article.segments:
        text = article.segment_text(segment)
        assert text == text.strip() and text
    spans = sorted((s.start, s.end) for s in article.segments)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), "segments overlap"


def test_teasers_after_the_marker_are_related_with_their_titles() -> None:
    article = parse("000_a2194725df4ab5f6")
    related = [s for s in article.segments if s.section is Section.RELATED]
    headings = [s.heading for s in related]
    assert "越中青年交流年轻一代的继承责任" in headings
    assert "越南政府总理范明政建议中国支持越南对华出口" in headings
    # The doubled title inside the body is a teaser too, and its figure stays searchable.
    trade = next(s for s in related if s.heading == "越南与中国贸易额突破2050亿美元")
    assert "1440亿美元" in article.segment_text(trade)
    body = section_text(article, Section.BODY)
    assert "胡志明市与中国8个地方保持着友好合作关系" in body
    assert "1440亿美元" not in body
    assert body.count("1月20日,胡志明市人民委员会举行纪念越中建交75周年仪式。") == 1  # repeated lead dropped


def test_link_titles_on_one_line_are_related_not_body() -> None:
    article = parse("001_53bd41b2b23f3bca")
    related = section_text(article, Section.RELATED)
    assert "越中经贸合作继续成为亮点 加强2025年越中人文交流年的文化、体育和旅游合作" in related
    assert "1431.2万人次" in related
    body = section_text(article, Section.BODY)
    assert "国会大厦" in body and "1950.1.18" in body
    assert "越中经贸合作继续成为亮点" not in body


def test_lead_repeated_with_a_dateline_prefix_is_dropped() -> None:
    article = parse("003_de8d194c5a4a5bf1")
    body = section_text(article, Section.BODY)
    assert "越通社河内——" not in body
    assert "郭永航" in body and "华南理工大学" in body and "480亿美元" in body
    related = section_text(article, Section.RELATED)
    assert "陈流光" in related and "郭永航" not in related


def test_caption_with_domain_and_image_word_dropped() -> None:
    article = parse("004_9796523c0b21f5fd")
    body = section_text(article, Section.BODY)
    assert "ảnh" not in body
    assert "浦东金融中心" in body and "2017-2021年" in body
    assert body.count("10月19日中午,胡志明市人民委员会副主席杨英德与中国上海市副市长宗明举行视频会议") == 1


def test_caption_like_line_repeated_twice_is_kept_once() -> None:
    article = parse("002_714598442bb43c6e")
    body = section_text(article, Section.BODY)
    assert body.count("越南高平、谅山、河江、广宁四个边境省份") == 1
    assert "范明正总理" in body


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("15:44 | 21/01/2025", "2025-01-21"),
        ("09:05 | 1/2/2024", "2024-02-01"),
        ("15:44 | 31/02/2025", None),  # no such day: never invented
        ("25:00 | 01/01/2025", None),
        ("１５：４４ ｜ ２１/０１/２０２５", "2025-01-21"),  # full-width
        ("2025年1月21日", "2025-01-21"),  # more formats: tests/test_dates.py
    ],
)
def test_dateline(line: str, expected: str | None) -> None:
    assert parse_dateline(line) == expected


def test_line_shapes() -> None:
    assert doubled_title("越南与中国贸易额 越南与中国贸易额") == "越南与中国贸易额"
    assert doubled_title("越南 与 越南") is None
    assert is_link_list("越中经贸合作继续成为亮点 加强2025年越中人文交流年的文化")
    assert not is_link_list("这是一个句子。 这是另一个句子。")
    assert not is_link_list("Vietnam and China signed an agreement")


def test_page_without_dateline_or_markers_is_all_body() -> None:
    text = "标题在这里\n\n第一段正文,说明了事情。\n第二段正文。"
    article = parse_page(text, doc_id="x", source="x.txt")
    assert article.title == "标题在这里"
    assert article.date is None
    assert [s.section for s in article.segments] == [Section.BODY]
