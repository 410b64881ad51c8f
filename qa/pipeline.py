"""The question pipeline: question → query → hybrid search → rerank → grounding → cited answer.

``Retrieval`` is what the pipeline derives from one index snapshot (searcher, reranker, grounding, name
variants); the index service prepares and warms it before swapping it in with its index.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from qa import answer as answer_text
from qa.config import Settings
from qa.embeddings.encoder import Encoder, Vectors
from qa.errors import QuestionError
from qa.index.search_index import SearchIndex
from qa.records import Answer, AnswerSpan, Hit
from qa.retrieval.abstain import Grounding
from qa.retrieval.copies import one_copy
from qa.retrieval.dictionary import Translation
from qa.retrieval.dictionary import shared as shared_dictionary
from qa.retrieval.gate import AnswerGate
from qa.retrieval.hybrid import HybridSearcher
from qa.retrieval.query import Query, QueryBuilder
from qa.retrieval.rerank import LinearRanker, Reranker
from qa.retrieval.transliterate import Transliteration
from qa.retrieval.variants import CorpusPairs, NameVariants
from qa.text.tokenize import ChineseTokenizer


@dataclass(frozen=True)
class Filters:
    date_from: str | None = None
    date_to: str | None = None
    doc_ids: tuple[str, ...] | None = None


class Retrieval:
    """Everything a question needs from one snapshot, swapped as one object when the index changes."""

    def __init__(
        self,
        index: SearchIndex,
        encoder: Encoder,
        tokenizer: ChineseTokenizer,
        settings: Settings,
        ranker: LinearRanker | None = None,
        gate: AnswerGate | None = None,
        previous: Retrieval | None = None,
    ) -> None:
        """``previous``: the snapshot this one replaces; what it derived from shared segments is reused."""
        r = settings.retrieval
        self.index = index
        self.searcher = HybridSearcher(index, encoder, r, fuse_in_engine=settings.vector_store.hybrid)
        self.reranker: Reranker = Reranker(
            index,
            tokenizer,
            coverage_weight=r.coverage_weight,
            type_weight=r.type_weight,
            ranker=ranker,
        )
        self.grounding = Grounding(index, r, gate, tokenizer.known, tokenizer.words)
        self.pairs: CorpusPairs = CorpusPairs.of_index(
            index, previous.pairs if previous is not None else None
        )
        self.variants = NameVariants(self.pairs)
        self.transliteration: Transliteration = Transliteration(
            self.pairs, previous.transliteration if previous is not None else None
        )
        self.translation = Translation(shared_dictionary(), index.passages)

    def expand(self, query: Query, translated: Callable[[str], bool]) -> Query:
        """The query with what this corpus adds: an English question's words and romanised names in
        the corpus's Chinese, and the corpus's other spellings of its names."""
        return self.variants.expand(
            self.transliteration.expand(self.translation.expand(query, translated), translated)
        )

    def warm(self) -> None:
        """Corpus statistics the first question would otherwise wait for; done before the swap."""
        self.variants.warm()
        self.transliteration.warm()


class _Slots:
    """At most ``n`` threads at once inside (``n`` 0: no limit); the others wait in arrival order, and a
    leaving thread hands its slot straight to the first of them (no newcomer takes it in between).

    The pipeline is mostly Python, so threads inside it share one core's worth of the GIL: 32 questions
    at once each took 32 times as long, and the GIL's hand-offs starved some of them for seconds
    (p99 7 s at 39 answered/s). Two at once let numpy and faiss, which release the GIL, overlap with
    Python; the rest queue, in order."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._inside = 0
        self._lock = threading.Lock()
        self._waiting: deque[threading.Event] = deque()

    def __enter__(self) -> None:
        if self._n <= 0:
            return
        with self._lock:
            if self._inside < self._n and not self._waiting:
                self._inside += 1
                return
            turn = threading.Event()
            self._waiting.append(turn)
        turn.wait()  # handed a slot by a leaving thread: ``_inside`` already counts it

    def __exit__(self, *_: object) -> None:
        if self._n <= 0:
            return
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._inside -= 1


class QuestionPipeline:
    def __init__(self, settings: Settings, queries: QueryBuilder) -> None:
        self.settings = settings
        self.queries = queries
        self.slots = _Slots(settings.server.questions_at_once)

    def check_question(self, question: str, top_k: int | None) -> int:
        """The number of passages to return; QuestionError when the question cannot be asked as given."""
        if not isinstance(question, str) or not any(c.isprintable() and not c.isspace() for c in question):
            raise QuestionError("the question is empty (or only spaces and control characters)")
        limit = self.settings.server.max_question_chars
        if len(question) > limit:
            raise QuestionError(f"the question has {len(question)} characters; the limit is {limit}")
        k = self.settings.retrieval.top_k if top_k is None else top_k
        if not 1 <= k <= self.settings.server.max_top_k:
            raise QuestionError(f"top_k must be between 1 and {self.settings.server.max_top_k}, got {k}")
        return k

    def ask(
        self,
        snapshot: Callable[[], Retrieval],
        question: str,
        *,
        history: Sequence[str] = (),
        top_k: int | None = None,
        filters: Filters | None = None,
    ) -> Answer:
        """Answer ``question`` from the snapshot ``snapshot()`` returns (taken once, after the question
        is checked)."""
        k = self.check_question(question, top_k)
        snap = snapshot()
        with self.slots:
            query = self.queries.build(question.strip(), [h for h in history if isinstance(h, str)])
            query = snap.expand(query, self.queries.translated)
        vectors = snap.searcher.encode(query)  # outside the slots: waiting questions encode as one batch
        with self.slots:
            return self._answer(snap, question, query, vectors, k, filters)

    def _answer(
        self,
        snap: Retrieval,
        question: str,
        query: Query,
        vectors: Vectors,
        k: int,
        filters: Filters | None,
    ) -> Answer:
        allowed = None
        if filters is not None:
            allowed = snap.index.mask(
                doc_ids=filters.doc_ids, date_from=filters.date_from, date_to=filters.date_to
            )
        depth = max(k, self.settings.retrieval.rerank_depth)
        candidates = snap.searcher.search(query, depth, allowed, filters, vectors)
        candidates = snap.reranker.rerank(query, candidates)
        candidates = one_copy(snap.searcher.body_before_teaser(candidates), snap.index)[: max(k, 10)]
        decision = snap.grounding.decide(query, candidates)
        index = snap.index
        hits: list[Hit] = []
        span: AnswerSpan | None = None
        for judged in decision.ordered[:k] if decision.answerable else []:
            cand = judged.candidate
            chunk = index.chunks[cand.row]
            article = index.articles[chunk.doc_id]
            why = [*cand.why, f"cosine {cand.dense_score:.3f}"]
            if judged.missing:
                why.append("does not mention " + "、".join(judged.missing))
            key = snap.reranker.key_sentence(query, cand.row)
            if key.span is not None and span is None and not hits:
                s0, s1 = key.span
                span = AnswerSpan(chunk.doc_id, chunk.start + s0, chunk.start + s1, chunk.text[s0:s1])
            hits.append(
                Hit(
                    chunk=chunk,
                    score=round(cand.score, 6),
                    title=article.title,
                    date=article.date,
                    url=article.url,
                    dense_score=round(cand.dense_score, 4),
                    dense_rank=cand.dense_rank,
                    lexical_rank=cand.lexical_rank,
                    supported=not judged.missing,
                    why=tuple(why),
                    key=(key.start, key.end),
                    answers=key.answers,
                )
            )
        return Answer(
            question=question,
            answerable=decision.answerable,
            hits=tuple(hits),
            text=answer_text.compose(question, hits, decision.answerable, decision.reason),
            reason=decision.reason,
            search_query=query.dense_text
            + (f" | history: {query.history_text}" if query.history_text else ""),
            span=span,
        )
