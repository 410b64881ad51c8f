"""Hybrid search: dense and lexical (BM25) candidate lists fused by weighted reciprocal rank.

The lists come from the snapshot's ``PassageIndex``, whichever backend holds it; one that fuses inside
its engine does so when the fusion asked for is its own (one question, equal weights). With conversation
history, a second pair of lists is searched for "earlier turns + question" and fused
with a lower weight, so a follow-up borrows the topic of the conversation without drowning the question.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from qa.config import RetrievalSettings
from qa.embeddings.encoder import Encoder, Vectors
from qa.index.passages import FusedHit, LexicalQuery, PassageFilter
from qa.index.search_index import SearchIndex
from qa.records import Section
from qa.retrieval.query import Query
from qa.text.normalize import char_bigrams


@dataclass
class Candidate:
    row: int
    score: float = 0.0
    dense_score: float = 0.0
    dense_rank: int | None = None
    lexical_rank: int | None = None
    lexical_score: float = 0.0  # BM25 score ÷ the best of its list (0 when not in the list)
    coverage: float = 0.0  # share of the question's terms in the passage's best sentence
    features: tuple[float, ...] = ()  # the learned ranker's features (qa.retrieval.rerank.FEATURES), if used
    why: list[str] = field(default_factory=list)


def rrf(ranked: list[list[tuple[int, float]]], weights: list[float], k: int) -> dict[int, float]:
    fused: dict[int, float] = {}
    for hits, weight in zip(ranked, weights, strict=True):
        for rank, (row, _) in enumerate(hits):
            fused[row] = fused.get(row, 0.0) + weight / (k + rank + 1)
    return fused


class HybridSearcher:
    def __init__(
        self,
        index: SearchIndex,
        encoder: Encoder,
        settings: RetrievalSettings,
        *,
        fuse_in_engine: bool = True,
    ) -> None:
        self.index = index
        self.encoder = encoder
        self.settings = settings
        self.fuse_in_engine = fuse_in_engine

    @staticmethod
    def _texts(query: Query) -> list[str]:
        """What is embedded: the question, and with history the earlier turns before it."""
        texts = [query.dense_text]
        if query.history_text:
            texts.append(f"{query.history_text} {query.dense_text}")
        return texts

    def encode(self, query: Query) -> Vectors:
        """The query's vectors, as :meth:`search` takes them (encoded once, batched with other threads')."""
        return self.encoder.encode_queries(self._texts(query))

    def search(
        self,
        query: Query,
        limit: int,
        allowed: npt.NDArray[np.bool_] | None = None,
        where: PassageFilter | None = None,
        vectors: Vectors | None = None,
    ) -> list[Candidate]:
        """``allowed`` is the filter as a row mask; ``where`` the same filter as fields, for a backend
        that filters inside its search (the mask then only re-checks the hits). ``vectors``: the query's
        from :meth:`encode`, when the caller encoded it already."""
        s = self.settings
        n = s.candidates
        texts = self._texts(query)
        lexical_queries = [LexicalQuery(query.dense_text, tuple(query.tokens))]
        if query.history_text:
            lexical_queries.append(LexicalQuery(texts[1], tuple(query.history_tokens + query.tokens)))
        if vectors is None:
            vectors = self.encoder.encode_queries(texts)
        passages = self.index.passages
        # An engine's own fusion (Milvus's RRFRanker) has no weights and takes one question: unequal
        # weights, or history lists, are fused here.
        if self.fuse_in_engine and not query.history_text and s.dense_weight == s.lexical_weight:
            fused_hits = passages.hybrid_search(
                vectors[0],
                lexical_queries[0],
                max(limit, n),
                candidates=n,
                rrf_k=s.rrf_k,
                allowed=allowed,
                where=where,
            )
            if fused_hits is not None:
                return self._engine_fused(fused_hits, vectors, limit)
        dense = passages.dense_search(vectors, n, allowed, where)
        lexical = passages.lexical_search(lexical_queries, n, allowed, where)
        lists = [dense[0], lexical[0]]
        weights = [s.dense_weight, s.lexical_weight]
        if query.history_text:
            lists += [dense[1], lexical[1]]
            weights += [s.dense_weight * s.history_weight, s.lexical_weight * s.history_weight]
        fused = rrf(lists, weights, s.rrf_k)
        if not fused:
            return []
        rows = list(fused)
        cosines = passages.vectors(rows) @ vectors[0]
        dense_rank = {row: r for r, (row, _) in enumerate(dense[0])}
        lexical_rank = {row: r for r, (row, _) in enumerate(lexical[0])}
        best_bm25 = max((score for _, score in lexical[0]), default=0.0)
        bm25 = {row: score / best_bm25 for row, score in lexical[0]} if best_bm25 > 0 else {}
        sections = self.index.sections  # not the chunks: most of the fused rows go no further
        scores = [
            fused[row] * (s.related_penalty if sections[row] is Section.RELATED else 1.0) for row in rows
        ]
        # The best ``limit`` in a stable order (ties keep the fused order); only they become candidates.
        kept = sorted(range(len(rows)), key=lambda i: -scores[i])[:limit]
        candidates = []
        for i in kept:
            row = rows[i]
            cand = Candidate(
                row,
                scores[i],
                float(cosines[i]),
                dense_rank.get(row),
                lexical_rank.get(row),
                bm25.get(row, 0.0),
            )
            if cand.dense_rank is not None:
                cand.why.append(f"dense #{cand.dense_rank + 1}")
            if cand.lexical_rank is not None:
                cand.why.append(f"bm25 #{cand.lexical_rank + 1}")
            candidates.append(cand)
        return candidates

    def _engine_fused(
        self, fused: list[FusedHit], vectors: npt.NDArray[np.float32], limit: int
    ) -> list[Candidate]:
        """Candidates from the engine's own fusion; cosines for grounding come from the fused passages'
        vectors, returned with them."""
        s = self.settings
        candidates = []
        for rank, hit in enumerate(fused):
            cosine = hit.vector @ vectors[0]
            score = hit.score * (
                s.related_penalty if self.index.sections[hit.row] is Section.RELATED else 1.0
            )
            candidates.append(Candidate(hit.row, score, float(cosine), why=[f"engine hybrid #{rank + 1}"]))
        candidates.sort(key=lambda c: -c.score)
        return candidates[:limit]

    def body_before_teaser(self, candidates: list[Candidate]) -> list[Candidate]:
        """A related-news teaser never ranks above a body passage of its page that says the same thing."""
        chunks = self.index.chunks
        ordered = list(candidates)
        i = 0
        while i < len(ordered):
            cand = ordered[i]
            chunk = chunks[cand.row]
            if chunk.section is Section.RELATED:
                grams = char_bigrams(chunk.text)
                for j in range(len(ordered) - 1, i, -1):
                    other = chunks[ordered[j].row]
                    if other.doc_id == chunk.doc_id and other.section is Section.BODY and grams:
                        overlap = len(grams & char_bigrams(other.text)) / len(grams)
                        if overlap >= 0.5:
                            ordered.insert(j, ordered.pop(i))
                            ordered[j].score = min(ordered[j].score, ordered[j - 1].score)
                            i -= 1
                            break
            i += 1
        return ordered
