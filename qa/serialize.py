"""The answer as JSON, the same for the CLI (--json), the HTTP service and the bot."""

from __future__ import annotations

from typing import Any

from qa.answer import key_of
from qa.records import Answer, Generation, Hit


def hit_to_json(hit: Hit, rank: int, question: str) -> dict[str, Any]:
    start, end = key_of(hit, question)
    return {
        "rank": rank,
        "text": hit.chunk.text,
        "score": hit.score,
        "doc_id": hit.chunk.doc_id,
        "title": hit.title,
        "date": hit.date,
        "url": hit.url,
        "section": hit.chunk.section.value,
        "heading": hit.chunk.heading or None,
        "start": hit.chunk.start,
        "end": hit.chunk.end,
        "highlight": {"start": start, "end": end},
        "dense_score": hit.dense_score,
        "why": list(hit.why),
    }


def answer_to_json(answer: Answer) -> dict[str, Any]:
    return {
        "question": answer.question,
        "answerable": answer.answerable,
        "answer": answer.text,
        "reason": answer.reason or None,
        "answer_span": (
            {"text": s.text, "doc_id": s.doc_id, "start": s.start, "end": s.end}
            if (s := answer.span) is not None
            else None
        ),
        "passages": [hit_to_json(h, i, answer.question) for i, h in enumerate(answer.hits, start=1)],
        "generation": generation_to_json(answer.generation),
    }


def generation_to_json(generation: Generation | None) -> dict[str, Any] | None:
    """How the language model's answer came about; None when the extractive answer was not replaced."""
    if generation is None:
        return None
    return {
        "model": generation.model,
        "removed": [{"sentence": r.sentence, "reason": r.reason} for r in generation.removed],
        "fallback": generation.fallback,
        "error": generation.error,
    }
