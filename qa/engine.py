"""The engine: one loaded index and encoder, shared by the CLI, the HTTP service and the bot."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from embeddings.encoder import Encoder, precision_of
from embeddings.models import load_encoder
from embeddings.query_batch import BatchingQueryEncoder
from qa import answer as answer_text
from qa.config import Settings
from qa.documents import (
    CorpusChange,
    NewDocument,
    prepare_document,
    remove_from_corpus,
    remove_temp_files,
    write_document,
)
from qa.errors import DocumentNotFoundError, IndexStoreError, QuestionError
from qa.index import builder, layout
from qa.index.builder import BuildReport
from qa.index.manifest import Chunking, DenseKey, IndexKey, LexicalKey
from qa.index.search_index import PASSAGE_CONTEXT, SearchIndex, load_index
from qa.ingest.chunker import chunk_article
from qa.ingest.loader import LoadReport, load_corpus
from qa.records import Answer, Article, Hit
from qa.retrieval.abstain import Grounding
from qa.retrieval.gazetteer import Gazetteer, Glossary
from qa.retrieval.hybrid import HybridSearcher
from qa.retrieval.query import AliasTable, QueryBuilder
from qa.retrieval.rerank import Reranker
from qa.retrieval.variants import NameVariants
from qa.text.tokenize import ChineseTokenizer

if TYPE_CHECKING:  # imported when used: it imports qa.errors, hence qa and this module
    from embeddings.milvus_store import MilvusStore

log = logging.getLogger(__name__)

PARSER_VERSION = "newspage-1"
TOKENIZER_VERSION = "jieba-words+cjk-bigrams-1"


@dataclass(frozen=True)
class Filters:
    date_from: str | None = None
    date_to: str | None = None
    doc_ids: tuple[str, ...] | None = None


class _Snapshot:
    """Everything a question needs, swapped as one object when the index changes."""

    def __init__(
        self, index: SearchIndex, encoder: Encoder, tokenizer: ChineseTokenizer, settings: Settings
    ) -> None:
        r = settings.retrieval
        self.index = index
        self.searcher = HybridSearcher(index, encoder, r, fuse_in_milvus=settings.vector_store.hybrid)
        self.reranker = Reranker(
            index, tokenizer, coverage_weight=r.coverage_weight, type_weight=r.type_weight
        )
        self.grounding = Grounding(index, r)
        self.variants = NameVariants(index.lexical.vocabulary())

    def warm(self) -> None:
        """Corpus statistics the first question would otherwise wait for; done before the swap."""
        self.reranker.warm()
        self.variants.warm()


class Engine:
    def __init__(self, settings: Settings, encoder: Encoder | None = None) -> None:
        self.settings = settings
        self._encoder = encoder
        self._query_encoder: BatchingQueryEncoder | None = None
        self._lock = threading.RLock()
        # One add/delete/build/reload at a time in this engine; writes also take the index folder's
        # build lock (layout.build_lock), which serialises them with other engines and processes.
        self._write_lock = threading.RLock()
        self._reload_lock = threading.RLock()
        self._snapshot: _Snapshot | None = None
        self._remote: MilvusStore | None = None
        self.aliases = AliasTable(settings.aliases.groups)
        userdict = (
            settings.resolve(Path(settings.retrieval.userdict)) if settings.retrieval.userdict else None
        )
        self.tokenizer = ChineseTokenizer(self.aliases.names, userdict)
        self.queries = QueryBuilder(
            self.tokenizer, self.aliases, settings.retrieval.history_turns, Gazetteer(), Glossary()
        )

    # -- parts -------------------------------------------------------------------------------------
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
                )
            return self._query_encoder

    @property
    def remote(self) -> MilvusStore | None:
        """The Milvus collection holding the passages (vector_store.backend = "milvus"), else None."""
        v = self.settings.vector_store
        if v.backend != "milvus":
            return None
        with self._lock:
            if self._remote is None:
                from embeddings.milvus_store import MilvusStore

                uri = v.uri if "://" in v.uri else str(self.settings.resolve(Path(v.uri)))
                self._remote = MilvusStore(uri, v.collection, self.encoder.dim, token=v.token)
            return self._remote

    def close(self) -> None:
        """Release the Milvus connection (and stop Milvus Lite's server when this was its last user)."""
        with self._lock:
            remote, self._remote = self._remote, None
        if remote is not None:
            remote.close()

    def index_key(self) -> IndexKey:
        """What the index must have been built with to serve this engine's settings."""
        c, m, v = self.settings.chunking, self.settings.model, self.settings.vector_store
        names = "\n".join(self.aliases.names)
        if self.settings.retrieval.userdict:
            path = self.settings.resolve(Path(self.settings.retrieval.userdict))
            names += "\n" + (path.read_text(encoding="utf-8") if path.is_file() else "")
        dense = DenseKey(
            model=self.encoder.name,
            dim=self.encoder.dim,
            # fp32 and int8 vectors differ slightly: never mixed in one index (a change re-embeds).
            precision=precision_of(self.encoder),
            passage_prefix=m.passage_prefix,
            max_seq_length=m.max_seq_length,
            chunking=Chunking(c.max_chars, c.overlap_chars, c.min_chars),
            parser=PARSER_VERSION,
            context=PASSAGE_CONTEXT,
            collection=v.collection if v.backend == "milvus" else None,
        )
        return IndexKey(dense, LexicalKey(TOKENIZER_VERSION, hashlib.sha256(names.encode()).hexdigest()[:16]))

    # -- index lifecycle ---------------------------------------------------------------------------
    def build(self, *, rebuild: bool = False, show_progress: bool | None = None) -> BuildReport:
        """Bring the index up to date with the corpus folder and load it."""
        s = self.settings
        with self._write_lock, layout.build_lock(s.index_dir):
            # Under the lock every corpus writer holds: no add or delete of another engine is half done.
            remove_temp_files(s.corpus_dir)
            started = time.perf_counter()
            corpus = load_corpus(s.corpus_dir, s.corpus.patterns, s.corpus.max_file_bytes)
            parsed = time.perf_counter() - started
            report = self._update(corpus, rebuild=rebuild, show_progress=show_progress)
            report.timings = {"parse": parsed, **report.timings}
            return report

    def _update(
        self, corpus: LoadReport, *, rebuild: bool = False, show_progress: bool | None = None
    ) -> BuildReport:
        s = self.settings
        report = builder.build_index(
            corpus,
            index_dir=s.index_dir,
            encoder=self.encoder,
            tokenizer=self.tokenizer,
            key=self.index_key(),
            chunking=s.chunking.kwargs(),
            rebuild=rebuild,
            show_progress=s.index.show_progress if show_progress is None else show_progress,
            remote=self.remote,
            store_params=s.vector_store.store_params(),
        )
        self.reload()
        return report

    # -- documents ---------------------------------------------------------------------------------
    def add_document(self, doc: NewDocument) -> Article:
        """Add or replace an article: stored in the corpus folder and searchable when this returns.

        A refused document (QuestionError) leaves the corpus and the index exactly as they were; so does
        a failure while the index is updated (the corpus files are put back)."""
        s = self.settings
        staged = prepare_document(s.corpus_dir, doc, max_bytes=s.corpus.max_file_bytes)
        if not chunk_article(staged.article, **s.chunking.kwargs()):
            raise QuestionError(
                f"the document has no passage of at least {s.chunking.min_chars} characters to index"
            )
        with self._write_lock, layout.build_lock(s.index_dir):
            current = self._latest().index.articles
            change = write_document(s.corpus_dir, staged, current.get(doc.doc_id))
            articles = [a for a in current.values() if a.doc_id != doc.doc_id] + [staged.article]
            self._apply(change, articles, current)
        return staged.article

    def delete_document(self, doc_id: str) -> None:
        """Remove an article from the corpus and the index; it is never cited again once this returns."""
        with self._write_lock, layout.build_lock(self.settings.index_dir):
            current = self._latest().index.articles
            article = current.get(doc_id)
            if article is None:
                raise DocumentNotFoundError(doc_id)
            change = remove_from_corpus(self.settings.corpus_dir, article)
            self._apply(change, [a for a in current.values() if a.doc_id != doc_id], current)

    def _apply(self, change: CorpusChange, articles: list[Article], before: dict[str, Article]) -> None:
        """Index ``articles`` after the corpus ``change``; if that fails, undo the change, and put the
        index back too when the failure came after a new version was published."""
        live = layout.read_pointer(self.settings.index_dir)
        try:
            self._update(LoadReport(articles=articles), show_progress=False)
        except BaseException:
            try:
                change.restore()
            except Exception:  # the original failure is what the caller must see
                log.exception("the corpus files could not be put back: %s", sorted(map(str, change.before)))
            if layout.read_pointer(self.settings.index_dir) != live:
                try:
                    self._update(LoadReport(articles=list(before.values())), show_progress=False)
                except Exception:
                    log.exception("the index could not be put back; the next `qa index` syncs it")
            raise

    def reload(self) -> None:
        """Load the live version of the index and swap it in for the questions asked from now on."""
        with self._reload_lock:  # two reloads never race: an older version never replaces a newer one
            index = load_index(
                self.settings.index_dir,
                self.index_key(),
                remote=self.remote,
                store_params=self.settings.vector_store.store_params(),
            )
            snapshot = _Snapshot(index, self.query_encoder, self.tokenizer, self.settings)
            snapshot.warm()
            with self._lock:
                self._snapshot = snapshot

    def _live(self) -> _Snapshot:
        """The snapshot to answer from: the loaded one, or the live version when another engine or process
        (another server worker or replica, a `qa index` run) has published since. Costs one read of the
        small ``CURRENT`` file per question; if the live version cannot be loaded, the loaded one serves."""
        snapshot = self._require()
        loaded = snapshot.index.version
        try:
            live = layout.read_pointer(self.settings.index_dir)
            if live is None or loaded is None or live[0] == loaded.name:
                return snapshot
            with self._reload_lock:
                current = self._require().index.version
                if current is None or current.name != live[0]:
                    self.reload()
        except IndexStoreError as exc:
            log.warning("answering from index %s: the live version cannot be loaded: %s", loaded, exc)
        return self._require()

    def _latest(self) -> _Snapshot:
        """The loaded snapshot, reloaded first when another engine or process has published since.
        Call it holding the build lock, so that nobody publishes before this engine's own update."""
        snapshot = self._require()
        live = layout.read_pointer(self.settings.index_dir)
        loaded = snapshot.index.version
        if live is None or loaded is None or live[0] != loaded.name:
            self.reload()
            snapshot = self._require()
        return snapshot

    def open(
        self, *, build_if_missing: bool = True, sync: bool = False, show_progress: bool | None = None
    ) -> Engine:
        """Load the index; build it first when there is none yet (first use on a fresh clone).

        With ``sync``, also bring it up to date with the corpus folder (what a server does at start-up,
        so that a write interrupted by a crash is completed).
        """
        try:
            self.reload()
            if sync:
                self.build(show_progress=show_progress)
        except IndexStoreError:
            from qa.index import layout

            if not build_if_missing or layout.current_version(self.settings.index_dir) is not None:
                raise
            log.info(
                "no index yet in %s: building it from %s", self.settings.index_dir, self.settings.corpus_dir
            )
            self.build(show_progress=show_progress)
        return self

    @property
    def index(self) -> SearchIndex:
        return self._require().index

    def _require(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is None:
            raise IndexStoreError("the engine has no index loaded; call open() first")
        return snapshot

    # -- questions ---------------------------------------------------------------------------------
    def check_question(self, question: str, top_k: int | None) -> int:
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
        question: str,
        *,
        history: Sequence[str] = (),
        top_k: int | None = None,
        filters: Filters | None = None,
    ) -> Answer:
        k = self.check_question(question, top_k)
        snap = self._live()
        query = self.queries.build(question.strip(), [h for h in history if isinstance(h, str)])
        query = snap.variants.expand(query)
        allowed = None
        if filters is not None:
            allowed = snap.index.mask(
                doc_ids=filters.doc_ids, date_from=filters.date_from, date_to=filters.date_to
            )
        depth = max(k, self.settings.retrieval.rerank_depth)
        candidates = snap.searcher.search(query, depth, allowed, filters)
        candidates = snap.reranker.rerank(query.question, query.tokens, candidates)
        candidates = snap.searcher.body_before_teaser(candidates)[: max(k, 10)]
        decision = snap.grounding.decide(query, candidates)
        index = snap.index
        hits: list[Hit] = []
        for judged in decision.ordered[:k] if decision.answerable else []:
            cand = judged.candidate
            chunk = index.chunks[cand.row]
            article = index.articles[chunk.doc_id]
            why = [*cand.why, f"cosine {cand.dense_score:.3f}"]
            if judged.missing:
                why.append("does not mention " + "、".join(judged.missing))
            hits.append(
                Hit(
                    chunk=chunk,
                    score=round(cand.score, 6),
                    title=article.title,
                    date=article.date,
                    dense_score=round(cand.dense_score, 4),
                    dense_rank=cand.dense_rank,
                    lexical_rank=cand.lexical_rank,
                    supported=not judged.missing,
                    why=tuple(why),
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
        )
