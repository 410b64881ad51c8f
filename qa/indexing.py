"""The index service: builds, writes (add, replace, delete) and loads the index, and holds the snapshot
questions are answered from.

One service per engine. Writes are serialised twice: by this service's write lock (threads of this
process) and by the index folder's build lock (other engines and processes). A snapshot is prepared
(``prepare``: whatever the question pipeline derives from an index, given the snapshot it replaces) and
warmed before it is swapped in, so a question never waits for a load; and a question always sees one
whole snapshot.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from qa.config import Settings
from qa.documents import (
    CorpusChange,
    NewDocument,
    prepare_document,
    remove_from_corpus,
    remove_temp_files,
    write_document,
)
from qa.embeddings.encoder import Encoder, precision_of
from qa.errors import (
    CorpusStaleError,
    DocumentNotFoundError,
    IndexFormatError,
    IndexStoreError,
    QuestionError,
)
from qa.index import builder, layout, sources
from qa.index.builder import BuildReport, Delta, MergePolicy, MergeReport
from qa.index.manifest import Chunking, DenseKey, IndexKey, LexicalKey
from qa.index.passages import PassageBackend, passage_backend
from qa.index.search_index import PASSAGE_CONTEXT, SearchIndex, load_index
from qa.ingest.chunker import chunk_article
from qa.ingest.loader import Kept, LoadReport
from qa.records import Article
from qa.text.tokenize import ChineseTokenizer

log = logging.getLogger(__name__)

PARSER_VERSION = "newspage-1"
TOKENIZER_VERSION = "jieba-words+cjk-bigrams-1"


def _write_against(
    index: SearchIndex, articles: list[Article], removed: frozenset[str] = frozenset()
) -> tuple[LoadReport, Delta | None]:
    """A write of ``articles`` and deletion of ``removed`` against the loaded ``index``: every other
    article stays as stored there, and nothing lists them (``Delta``). An index without a version (never
    one that was loaded) lists them as kept instead."""
    if index.version is None:
        touched = {a.doc_id for a in articles} | removed
        kept = [Kept(doc_id, digest, 0) for doc_id, digest in index.stored() if doc_id not in touched]
        return LoadReport(articles, kept=kept), None
    return LoadReport(articles), Delta(index.version.name, removed)


class Prepared(Protocol):
    """What the question pipeline derives from one index: swapped in with it."""

    @property
    def index(self) -> SearchIndex: ...

    def warm(self) -> None:
        """Compute what the first question would otherwise wait for; called before the swap."""
        ...


S = TypeVar("S", bound=Prepared)


class IndexService(Generic[S]):
    def __init__(
        self,
        settings: Settings,
        tokenizer: ChineseTokenizer,
        alias_names: Sequence[str],
        encoder: Callable[[], Encoder],
        prepare: Callable[[SearchIndex, S | None], S],
        backend: PassageBackend | None = None,
    ) -> None:
        self.settings = settings
        self.tokenizer = tokenizer
        self._alias_names = tuple(alias_names)
        self._encoder = encoder
        self._prepare = prepare
        self._lock = threading.RLock()
        # One add/delete/build/reload at a time in this service; writes also take the index folder's
        # build lock (layout.build_lock), which serialises them with other engines and processes.
        self._write_lock = threading.RLock()
        self._reload_lock = threading.RLock()
        self._snapshot: S | None = None
        self._merger: threading.Thread | None = None  # the background merge under way, if any
        self._merge_wanted = False  # a write since the background merge last looked
        self._given = backend  # the caller's backend, or None: made from vector_store.backend on first use
        self._backend = backend

    # -- parts -------------------------------------------------------------------------------------
    @property
    def backend(self) -> PassageBackend:
        """Where the passages live (``vector_store.backend``), connected on first use."""
        with self._lock:
            if self._backend is None:
                s = self.settings
                self._backend = self._given or passage_backend(
                    s.vector_store, self._encoder().dim, s.config_path.parent
                )
            return self._backend

    def close(self) -> None:
        """Finish a merge under way, then release the backend's connection (a Milvus Lite server stops
        when this was its last user). Used again after this, the service reconnects: the caller's
        backend again, or a new one made from the configuration."""
        self.wait_for_merges()
        with self._lock:
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def index_key(self) -> IndexKey:
        """What the index must have been built with to serve this service's settings."""
        s = self.settings
        c, m = s.chunking, s.model
        encoder = self._encoder()
        names = "\n".join(self._alias_names)
        if s.retrieval.userdict:
            path = s.resolve(Path(s.retrieval.userdict))
            names += "\n" + (path.read_text(encoding="utf-8") if path.is_file() else "")
        dense = DenseKey(
            model=encoder.name,
            dim=encoder.dim,
            # fp32 and int8 vectors differ slightly: never mixed in one index (a change re-embeds).
            precision=precision_of(encoder),
            passage_prefix=m.passage_prefix,
            max_seq_length=m.max_seq_length,
            chunking=Chunking(c.max_chars, c.overlap_chars, c.min_chars),
            parser=PARSER_VERSION,
            context=PASSAGE_CONTEXT,
            collection=self.backend.collection,
        )
        return IndexKey(dense, LexicalKey(TOKENIZER_VERSION, hashlib.sha256(names.encode()).hexdigest()[:16]))

    # -- index lifecycle ---------------------------------------------------------------------------
    def build(self, *, rebuild: bool = False, show_progress: bool | None = None) -> BuildReport:
        """Bring the index up to date with the corpus folder and load it. Only the files that changed
        since the last build are parsed (``qa.index.sources``); ``rebuild`` parses and embeds everything."""
        s = self.settings
        with self._write_lock, layout.build_lock(s.index_dir):
            # Under the lock every corpus writer holds: no add or delete of another engine is half done.
            remove_temp_files(s.corpus_dir)
            started = time.perf_counter()
            key = self._sources_key()
            live = None if rebuild else self._live_or_none()
            known = sources.Sources.read(s.index_dir, key) if live is not None else sources.Sources(key, {})
            stored = dict(live.stored()) if live is not None else {}
            read = sources.read_corpus(
                s.corpus_dir, s.corpus.patterns, s.corpus.max_file_bytes, known, stored
            )
            parsed = time.perf_counter() - started
            try:
                report = self._update(read.report, rebuild=rebuild, show_progress=show_progress)
            except CorpusStaleError as exc:  # another writer published in between: read it all
                log.info("%s", exc)
                read = sources.read_corpus(
                    s.corpus_dir, s.corpus.patterns, s.corpus.max_file_bytes, sources.Sources(key, {}), {}
                )
                report = self._update(read.report, rebuild=rebuild, show_progress=show_progress)
            loaded = self._loaded()
            if loaded is not None:
                sources.record(s.index_dir, key, read, dict(loaded.stored()))
            report.timings = {"parse": parsed, **report.timings}
            report.files_parsed, report.files_hashed = read.parsed, read.hashed
        self._merge_soon()
        return report

    def _sources_key(self) -> str:
        """What a file's articles depend on besides its bytes: the parser and the size limit."""
        return json.dumps([PARSER_VERSION, self.settings.corpus.max_file_bytes])

    def _live_or_none(self) -> SearchIndex | None:
        """The live index, loaded if it is not yet; None when there is none this service can use."""
        try:
            return self.latest().index if self._snapshot is not None else self._reload_index()
        except IndexStoreError:
            return None

    def _reload_index(self) -> SearchIndex:
        self.reload()
        return self.current().index

    def _update(
        self,
        corpus: LoadReport,
        *,
        rebuild: bool = False,
        show_progress: bool | None = None,
        delta: Delta | None = None,
    ) -> BuildReport:
        s = self.settings
        report = builder.build_index(
            corpus,
            index_dir=s.index_dir,
            encoder=self._encoder(),
            tokenizer=self.tokenizer,
            key=self.index_key(),
            chunking=s.chunking.kwargs(),
            backend=self.backend,
            rebuild=rebuild,
            show_progress=s.index.show_progress if show_progress is None else show_progress,
            live=self._loaded(),
            delta=delta,
        )
        self.reload(report.index)
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
            current = self.latest().index
            change = write_document(s.corpus_dir, staged, current.articles.get(doc.doc_id))
            self._apply(change, *_write_against(current, [staged.article]), current)
        self._merge_soon()
        return staged.article

    def delete_document(self, doc_id: str) -> None:
        """Remove an article from the corpus and the index; it is never cited again once this returns."""
        with self._write_lock, layout.build_lock(self.settings.index_dir):
            current = self.latest().index
            article = current.articles.get(doc_id)
            if article is None:
                raise DocumentNotFoundError(doc_id)
            change = remove_from_corpus(self.settings.corpus_dir, article)
            self._apply(change, *_write_against(current, [], frozenset([doc_id])), current)
        self._merge_soon()

    def _apply(
        self, change: CorpusChange, corpus: LoadReport, delta: Delta | None, before: SearchIndex
    ) -> None:
        """Index ``corpus`` (``delta``: a write against the loaded version) after the corpus ``change``;
        if that fails, undo the change, and put the index back too when the failure came after a new
        version was published."""
        live = layout.read_pointer(self.settings.index_dir)
        try:
            self._update(corpus, show_progress=False, delta=delta)
        except BaseException:
            try:
                change.restore()
            except Exception:  # the original failure is what the caller must see
                log.exception("the corpus files could not be put back: %s", sorted(map(str, change.before)))
            if layout.read_pointer(self.settings.index_dir) != live:
                try:
                    articles = [before.articles[d] for d, _ in before.stored()]
                    self._update(LoadReport(articles=articles), show_progress=False)
                except Exception:
                    log.exception("the index could not be put back; the next `qa index` syncs it")
            raise

    # -- merges ------------------------------------------------------------------------------------
    def policy(self) -> MergePolicy:
        i = self.settings.index
        return MergePolicy(i.max_segments, i.merge_width, i.max_dead_share)

    def compact(self) -> MergeReport | None:
        """Merge every segment into one, dropping dead rows; None when there is one already."""
        self.wait_for_merges()
        with self._write_lock, layout.build_lock(self.settings.index_dir):
            report = self._merge(everything=True)
        return report

    def _merge(self, *, everything: bool = False) -> MergeReport | None:
        """One merge (under the write locks), then the merged version loaded."""
        report = builder.merge_index(
            index_dir=self.settings.index_dir,
            key=self.index_key(),
            backend=self.backend,
            policy=self.policy(),
            everything=everything,
            live=self._loaded(),
        )
        if report is not None:
            self.reload()
        return report

    def merge_now(self) -> int:
        """Merge until the policy is satisfied; how many merges that took. Each takes the write locks in
        turn, so a write waits for one merge at most."""
        merges = 0
        while True:
            with self._write_lock, layout.build_lock(self.settings.index_dir):
                if self._merge() is None:
                    return merges
            merges += 1

    def _merge_soon(self) -> None:
        """After a write: merge as ``index.merge`` says (in a thread of this service, right now, or not)."""
        mode = self.settings.index.merge
        if mode == "off":
            return
        loaded = self._loaded()
        if loaded is None or self.policy().plan(builder.segment_sizes(loaded)) is None:
            return  # nothing to merge yet (another process's writes are seen at its next write)
        if mode == "inline":
            self.merge_now()
            return
        with self._lock:
            self._merge_wanted = True
            if self._merger is None:  # else the running one sees the flag before it stops
                self._merger = threading.Thread(
                    target=self._merge_in_background, name="qa-merge", daemon=True
                )
                self._merger.start()

    def _merge_in_background(self) -> None:
        while True:
            with self._lock:
                if not self._merge_wanted:
                    self._merger = None
                    return
                self._merge_wanted = False
            try:
                self.merge_now()
            except Exception:  # the index stays as the last write left it; the next write tries again
                log.exception("merging index segments failed")

    def wait_for_merges(self, timeout: float | None = None) -> None:
        """Return once no merge of this service is under way."""
        merger = self._merger
        if merger is not None and merger is not threading.current_thread():
            merger.join(timeout)

    # -- snapshots ---------------------------------------------------------------------------------
    def reload(self, written: SearchIndex | None = None) -> None:
        """Load the live version of the index and swap it in for the questions asked from now on.
        ``written``: the version this service's build has just published, as the build assembled and
        opened it; taken as it is while ``CURRENT`` names it (nothing is read or assembled again)."""
        with self._reload_lock:  # two reloads never race: an older version never replaces a newer one
            if written is not None and written.version is not None:
                pointer = layout.read_pointer(self.settings.index_dir)
                if pointer is not None and pointer[0] == written.version.name:
                    self._swap(written)
                    return
            # The segments the loaded snapshot shares with the live version are not read again.
            index = load_index(
                self.settings.index_dir, self.index_key(), self.backend, previous=self._loaded()
            )
            self._swap(index)

    def _swap(self, index: SearchIndex) -> None:
        """Prepare and warm ``index`` for questions, then swap it in (under the reload lock)."""
        with self._reload_lock:
            snapshot = self._prepare(index, self._snapshot)
            snapshot.warm()
            with self._lock:
                self._snapshot = snapshot

    def live(self) -> S:
        """The snapshot to answer from: the loaded one, or the live version when another engine or process
        (another server worker or replica, a `qa index` run) has published since. Costs one read of the
        small ``CURRENT`` file per question; if the live version cannot be loaded, the loaded one serves."""
        snapshot = self.current()
        loaded = snapshot.index.version
        try:
            live = layout.read_pointer(self.settings.index_dir)
            if live is None or loaded is None or live[0] == loaded.name:
                return snapshot
            with self._reload_lock:
                version = self.current().index.version
                if version is None or version.name != live[0]:
                    self.reload()
        except IndexStoreError as exc:
            log.warning("answering from index %s: the live version cannot be loaded: %s", loaded, exc)
        return self.current()

    def latest(self) -> S:
        """The loaded snapshot, reloaded first when another engine or process has published since.
        Call it holding the build lock, so that nobody publishes before this service's own update."""
        snapshot = self.current()
        live = layout.read_pointer(self.settings.index_dir)
        loaded = snapshot.index.version
        if live is None or loaded is None or live[0] != loaded.name:
            self.reload()
            snapshot = self.current()
        return snapshot

    def open(
        self, *, build_if_missing: bool = True, sync: bool = False, show_progress: bool | None = None
    ) -> None:
        """Load the index; build it first when there is none yet (first use on a fresh clone).

        With ``sync``, also bring it up to date with the corpus folder (what a server does at start-up,
        so that a write interrupted by a crash is completed).
        """
        try:
            self.reload()
            if sync:
                self.build(show_progress=show_progress)
        except IndexFormatError as exc:
            if not build_if_missing:
                raise
            # Written by an older version: built again in this one's layout, its embeddings reused.
            log.info("%s: building the index again", exc)
            self.build(show_progress=show_progress)
        except IndexStoreError:
            if not build_if_missing or layout.current_version(self.settings.index_dir) is not None:
                raise
            log.info(
                "no index yet in %s: building it from %s", self.settings.index_dir, self.settings.corpus_dir
            )
            self.build(show_progress=show_progress)

    def _loaded(self) -> SearchIndex | None:
        snapshot = self._snapshot
        return snapshot.index if snapshot is not None else None

    def current(self) -> S:
        """The loaded snapshot, as it is; IndexStoreError before the first load."""
        snapshot = self._snapshot
        if snapshot is None:
            raise IndexStoreError("the engine has no index loaded; call open() first")
        return snapshot
