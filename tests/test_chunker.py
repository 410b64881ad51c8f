"""Every chunk quotes its source exactly: source[start:end] == chunk.text, for any text."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from qa.ingest.chunker import chunk_article, sentence_spans
from qa.ingest.newspage import parse_page
from qa.records import Section
from tests.conftest import SEEDS

ALPHABET = st.sampled_from(
    list("越南中国的贸易额合作胡志明市上海广西两国关系发展年月日亿美元")
    + list("。！？；，、：!?;,.:“”()（）《》 \t\u3000\n\n\r")
    + list("abcXYZ0123456789")
    + ["ả", "ệ", "图自越通社", "相关新闻", "\n更多\n", "15:44 | 21/01/2025", "anh-3.png", "😀", "\ufeff"]
)
TEXTS = st.lists(ALPHABET, max_size=400).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, max_chars=st.integers(20, 300), overlap=st.integers(0, 100))
def test_chunks_quote_the_source_exactly(text: str, max_chars: int, overlap: int) -> None:
    overlap = min(overlap, max_chars - 1)
    article = parse_page(text, doc_id="d", source="d.txt")
    spans = [(s.start, s.end) for s in article.segments]
    assert spans == sorted(spans)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), "segments overlap"
    assert all(0 <= a < b <= len(text) for a, b in spans)
    chunks = chunk_article(article, max_chars=max_chars, overlap_chars=overlap, min_chars=1)
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert 0 < len(chunk.text) <= max_chars
        assert chunk.text == chunk.text.strip(" \t\r\n\f\v\u3000\ufeff\u200b")
        inside = [s for s in article.segments if s.start <= chunk.start and chunk.end <= s.end]
        assert len(inside) == 1, "a chunk never crosses a segment boundary"
        assert inside[0].section is chunk.section


@settings(max_examples=200, deadline=None)
@given(text=TEXTS)
def test_every_character_of_a_segment_is_covered(text: str) -> None:
    article = parse_page(text, doc_id="d", source="d.txt")
    chunks = chunk_article(article, max_chars=50, overlap_chars=10, min_chars=1)
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    for segment in article.segments:
        for i in range(segment.start, segment.end):
            assert i in covered or text[i].isspace() or text[i] in "\ufeff\u200b\u3000"


def test_sentences_break_on_full_and_half_width_punctuation() -> None:
    text = "第一句。第二句!第三句？第四句;第五句\n第六句"
    spans = list(sentence_spans(text, 0, len(text), 100))
    assert [text[s:e] for s, e in spans] == ["第一句。", "第二句!", "第三句？", "第四句;", "第五句", "第六句"]


def test_long_sentence_is_cut_at_commas_then_hard() -> None:
    text = "甲" * 30 + "，" + "乙" * 70 + "。"
    spans = list(sentence_spans(text, 0, len(text), 40))
    assert all(e - s <= 40 for s, e in spans)
    assert "".join(text[s:e] for s, e in spans) == text


def test_seed_chunks_are_exact_and_sized() -> None:
    for path in sorted(SEEDS.glob("*.txt")):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        article = parse_page(text, doc_id=path.stem, source=str(path))
        chunks = chunk_article(article, max_chars=240, overlap_chars=60, min_chars=4)
        assert chunks
        assert any(c.section is Section.RELATED for c in chunks)
        for chunk in chunks:
            assert text[chunk.start : chunk.end] == chunk.text
            assert len(chunk.text) <= 240
