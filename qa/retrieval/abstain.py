"""Grounding: is a passage really about what the question asks, and is anything confident enough?

Two signals, both measured on the evaluation sets:
- coverage: every named entity of the question (people, places, organisations, years) must appear in
  the passage's article (its title and body), or, for a related-news teaser, in the teaser itself;
- similarity: the passage's cosine with the question must reach ``min_dense_score``.
"""

from __future__ import annotations

from functools import lru_cache

from qa.index.search_index import SearchIndex
from qa.records import Section
from qa.retrieval.hybrid import Candidate
from qa.retrieval.query import Query
from qa.textnorm import fold


class Grounding:
    def __init__(self, index: SearchIndex, *, min_dense_score: float, entity_check: bool) -> None:
        self.index = index
        self.min_dense_score = min_dense_score
        self.entity_check = entity_check
        self._article_text = lru_cache(maxsize=4096)(self._fold_article)

    def _fold_article(self, doc_id: str) -> str:
        article = self.index.articles[doc_id]
        body = [article.segment_text(s) for s in article.segments if s.section is Section.BODY]
        return fold(article.title + "\n" + "\n".join(body))

    def support_text(self, row: int) -> str:
        chunk = self.index.chunks[row]
        if chunk.section is Section.RELATED:
            return fold(chunk.heading + "\n" + chunk.text)
        return self._article_text(chunk.doc_id)

    def missing_entities(self, query: Query, row: int) -> list[str]:
        if not self.entity_check or not query.entities:
            return []
        text = self.support_text(row)
        return [group[0] for group in query.entities if not any(name in text for name in group)]

    def confident(self, candidate: Candidate) -> bool:
        return candidate.dense_score >= self.min_dense_score
