"""The engine: one index and encoder, shared by the CLI, the HTTP service and the bot.

A thin façade: the index service (``qa.indexing``) builds, writes and loads the index and holds the
snapshot; the question pipeline (``qa.pipeline``) answers from it; the engine loads the model and wires
the two together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from qa import metrics
from qa.config import Settings
from qa.documents import NewDocument
from qa.embeddings.encoder import Encoder
from qa.embeddings.models import load_encoder
from qa.embeddings.query_batch import BatchingQueryEncoder
from qa.errors import ConfigError
from qa.generation import AnswerWriter, WrittenStream, make_writer
from qa.index.builder import BuildReport, MergeReport
from qa.index.manifest import IndexKey
from qa.index.passages import PassageBackend
from qa.index.search_index import SearchIndex
from qa.indexing import IndexService
from qa.pipeline import Filters, QuestionPipeline, Retrieval
from qa.records import Answer, Article
from qa.retrieval.gate import AnswerGate
from qa.retrieval.gazetteer import Gazetteer, Glossary
from qa.retrieval.query import AliasTable, QueryBuilder
from qa.retrieval.rerank import LinearRanker
from qa.text.tokenize import ChineseTokenizer

__all__ = ["Engine", "Filters"]


class Engine:
    def __init__(
        self, settings: Settings, encoder: Encoder | None = None, backend: PassageBackend | None = None
    ) -> None:
        """``encoder`` and ``backend`` replace the configured model and vector store (tests, embedding
        the engine over a store of one's own); by default both are made from ``settings`` on first use."""
        self.settings = settings
        self._encoder = encoder
        self._query_encoder: BatchingQueryEncoder | None = None
        self._lock = threading.RLock()
        self.aliases = AliasTable(settings.aliases.groups)
        userdict = (
            settings.resolve(Path(settings.retrieval.userdict)) if settings.retrieval.userdict else None
        )
        self.tokenizer = ChineseTokenizer(self.aliases.names, userdict)
        self.queries = QueryBuilder(
            self.tokenizer, self.aliases, settings.retrieval.history_turns, Gazetteer(), Glossary()
        )
        self.pipeline = QuestionPipeline(settings, self.queries)
        # generation.backend = "openai": a language model writes the answer (qa.generation); else None
        self.writer: AnswerWriter | None = make_writer(settings.generation, self.tokenizer, self.aliases)
        r = settings.retrieval
        ranker = LinearRanker.load(settings.ranker_weights_path) if r.ranker == "learned" else None
        if r.abstention == "learned" and ranker is None:
            raise ConfigError('retrieval.abstention = "learned" needs retrieval.ranker = "learned"')
        gate = AnswerGate.load(settings.gate_weights_path) if r.abstention == "learned" else None
        self.indexing: IndexService[Retrieval] = IndexService(
            settings,
            self.tokenizer,
            self.aliases.names,
            encoder=lambda: self.encoder,
            prepare=lambda index, previous: Retrieval(
                index, self.query_encoder, self.tokenizer, settings, ranker, gate, previous
            ),
            backend=backend,
        )

    # -- the model ---------------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            m = self.settings.model
            self._encoder = load_encoder(
                m.name,
                cache_dir=self.settings.model_cache_dir,
                query_prefix=m.query_prefix,
                passage_prefix=m.passage_prefix,
                batch_size=m.batch_size,
                max_seq_length=m.max_seq_length,
                precision=m.precision,
                threads=m.threads,
            )
        return self._encoder

    @property
    def query_encoder(self) -> BatchingQueryEncoder:
        """The encoder for questions: cached, and batched across concurrent callers."""
        with self._lock:
            if self._query_encoder is None or self._query_encoder.inner is not self.encoder:
                srv = self.settings.server
                self._query_encoder = BatchingQueryEncoder(
                    self.encoder,
                    cache_size=srv.query_cache_size,
                    max_batch=srv.query_batch_max,
                    wait_ms=srv.query_batch_wait_ms,
                    on_encoded=metrics.record_encoding,
                )
            return self._query_encoder

    # -- the index (see qa.indexing.IndexService) ----------------------------------------------------
    def open(
        self, *, build_if_missing: bool = True, sync: bool = False, show_progress: bool | None = None
    ) -> Engine:
        """Load the index; build it first when there is none yet (first use on a fresh clone). With
        ``sync``, also bring it up to date with the corpus folder (what a server does at start-up)."""
        self.indexing.open(build_if_missing=build_if_missing, sync=sync, show_progress=show_progress)
        return self

    def close(self) -> None:
        """Finish a merge under way and release the index backend's connection (Milvus)."""
        self.indexing.close()

    def index_key(self) -> IndexKey:
        return self.indexing.index_key()

    def build(self, *, rebuild: bool = False, show_progress: bool | None = None) -> BuildReport:
        """Bring the index up to date with the corpus folder and load it."""
        report = self.indexing.build(rebuild=rebuild, show_progress=show_progress)
        if report.added or report.updated or report.removed:
            metrics.record_write("build")
        return report

    def compact(self) -> MergeReport | None:
        """Merge every segment of the index into one, dropping deleted rows (``qa index --compact``)."""
        merged = self.indexing.compact()
        if merged is not None:
            metrics.record_write("merge")
        return merged

    def add_document(self, doc: NewDocument) -> Article:
        """Add or replace an article: stored in the corpus folder and searchable when this returns."""
        article = self.indexing.add_document(doc)
        metrics.record_write("add")
        return article

    def delete_document(self, doc_id: str) -> None:
        """Remove an article from the corpus and the index; it is never cited again once this returns."""
        self.indexing.delete_document(doc_id)
        metrics.record_write("delete")

    def reload(self) -> None:
        """Load the live version of the index and swap it in for the questions asked from now on."""
        self.indexing.reload()

    @property
    def index(self) -> SearchIndex:
        return self.indexing.current().index

    # -- questions (see qa.pipeline.QuestionPipeline) ------------------------------------------------
    def check_question(self, question: str, top_k: int | None) -> int:
        return self.pipeline.check_question(question, top_k)

    def ask(
        self,
        question: str,
        *,
        history: Sequence[str] = (),
        top_k: int | None = None,
        filters: Filters | None = None,
        write: bool = True,
    ) -> Answer:
        """The answer; written by the language model when one is configured (not when ``write`` is false:
        then :meth:`write_stream` streams it)."""
        started = time.perf_counter()
        answer = self.pipeline.ask(
            self.indexing.live, question, history=history, top_k=top_k, filters=filters
        )
        metrics.record_answer(answer.answerable, answer.reason, time.perf_counter() - started)
        if write and self.writer is not None:
            answer = self.writer.write(answer, history, self._spellings)
        return answer

    def write_stream(self, answer: Answer, history: Sequence[str] = ()) -> WrittenStream | None:
        """The written answer to ``answer`` (from ``ask(..., write=False)``) as checked sentences, or None
        when no model is configured or the service abstains."""
        return None if self.writer is None else self.writer.stream(answer, history, self._spellings)

    def _spellings(self, name: str) -> list[str]:
        """Other spellings of a name the corpus holds (范明政 / 范明正), for checking written sentences."""
        return self.indexing.current().variants.of(name)
