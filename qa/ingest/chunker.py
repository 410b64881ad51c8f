"""Split segments into passages on sentence boundaries, with exact offsets into the source text."""

from __future__ import annotations

import re
from collections.abc import Iterator

from qa.records import Article, Chunk, Segment

# A sentence ends after 。！？；!?; (full- or half-width) and any closing quotes or brackets, or at a newline.
_SENTENCE = re.compile(r"[^。！？；!?;\n]*(?:[。！？；!?;]+[”’」』）)\]\"']*|\n|$)")
_CLAUSE = re.compile(r"[^，,、：:]*(?:[，,、：:]+|$)")
_SPACE = " \t\r\n\f\v\u3000\ufeff\u200b"


def _trimmed(text: str, start: int, end: int) -> tuple[int, int] | None:
    piece = text[start:end]
    left = len(piece) - len(piece.lstrip(_SPACE))
    right = len(piece.rstrip(_SPACE))
    return (start + left, start + right) if right > left else None


def _pieces(text: str, start: int, end: int, pattern: re.Pattern[str]) -> Iterator[tuple[int, int]]:
    for match in pattern.finditer(text, start, end):
        if match.end() > match.start():
            span = _trimmed(text, match.start(), match.end())
            if span:
                yield span


def sentence_spans(text: str, start: int, end: int, max_chars: int) -> Iterator[tuple[int, int]]:
    """Sentences of ``text[start:end]``; one longer than max_chars is cut at commas, then hard."""
    for s, e in _pieces(text, start, end, _SENTENCE):
        if e - s <= max_chars:
            yield s, e
            continue
        for cs, ce in _pieces(text, s, e, _CLAUSE):
            while ce - cs > max_chars:
                yield cs, cs + max_chars
                cs = cs + max_chars
            if ce > cs:
                yield cs, ce


def _pack(spans: list[tuple[int, int]], max_chars: int, overlap_chars: int) -> Iterator[tuple[int, int]]:
    """Greedy: whole sentences up to max_chars; each chunk may start with the previous one's tail."""
    i = 0
    while i < len(spans):
        j = i
        while j + 1 < len(spans) and spans[j + 1][1] - spans[i][0] <= max_chars:
            j += 1
        yield spans[i][0], spans[j][1]
        if j + 1 >= len(spans):
            return
        # Start the next chunk with as many trailing sentences as fit in the overlap, but move forward.
        k = j + 1
        while k - 1 > i and spans[j][1] - spans[k - 1][0] <= overlap_chars:
            k -= 1
        if spans[j + 1][1] - spans[k][0] > max_chars:
            k = j + 1
        i = k


def chunk_segment(
    article: Article, segment: Segment, *, max_chars: int, overlap_chars: int, min_chars: int
) -> list[Chunk]:
    spans = list(sentence_spans(article.text, segment.start, segment.end, max_chars))
    chunks = []
    for start, end in _pack(spans, max_chars, overlap_chars):
        if end - start < min_chars:
            continue
        chunks.append(
            Chunk(
                doc_id=article.doc_id,
                section=segment.section,
                start=start,
                end=end,
                text=article.text[start:end],
                heading=segment.heading,
            )
        )
    return chunks


def chunk_article(article: Article, *, max_chars: int, overlap_chars: int, min_chars: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for segment in article.segments:
        chunks.extend(
            chunk_segment(
                article, segment, max_chars=max_chars, overlap_chars=overlap_chars, min_chars=min_chars
            )
        )
    return chunks
