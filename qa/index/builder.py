"""Build or update the index from the corpus folder: only new or changed articles are embedded."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from qa.embeddings.encoder import Encoder, Vectors
from qa.errors import CorpusError, CorpusStaleError, IndexStoreError
from qa.index import layout
from qa.index.embed_cache import EmbeddingCache
from qa.index.manifest import Counts, IndexKey, Manifest, SegmentRef
from qa.index.passages import PassageBackend, PassageWrite
from qa.index.search_index import (
    SearchIndex,
    SegmentTables,
    assemble,
    passage_text,
    read_snapshot,
)
from qa.index.tables import Tables
from qa.ingest.chunker import chunk_article
from qa.ingest.loader import Kept, LoadReport
from qa.records import Article, Chunk
from qa.text.normalize import SENTENCE
from qa.text.tokenize import ChineseTokenizer

log = logging.getLogger(__name__)
ENCODE_BATCH = 256


@dataclass
class BuildReport:
    articles: int = 0
    passages: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    encoded: int = 0
    skipped: list[CorpusError] = field(default_factory=list)
    seconds: float = 0.0
    version: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    files_parsed: int = 0  # corpus files read and parsed (the others were unchanged since the last build)
    files_hashed: int = 0  # unchanged files read only to compare their hash (their stat had changed)
    # The version published, as the build assembled and opened it (None when nothing was published):
    # the caller loads it as it is instead of reading it again.
    index: SearchIndex | None = field(default=None, repr=False, compare=False)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


@dataclass(frozen=True)
class Delta:
    """A write against one version of the index: the corpus report's articles are added (or replace
    theirs), ``removed`` are deleted, and every other article of ``base`` (the version's name) stays as
    stored there. A write then costs its articles, not the corpus: nothing lists the others."""

    base: str
    removed: frozenset[str] = frozenset()


def article_hash(article: Article) -> str:
    fields: list[object] = [article.title, article.date, article.url, article.text]
    if article.fetched_at or article.other_urls:  # absent: the digests of earlier indexes stay the same
        fields += [article.fetched_at, list(article.other_urls)]
    payload = json.dumps(fields, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _against(corpus: LoadReport, delta: Delta, source: SearchIndex | None, *, whole: bool) -> LoadReport:
    """Check that ``source`` is the version ``delta`` was made against (CorpusStaleError if not: another
    writer published in between). With ``whole`` (every article is written again), ``corpus`` with
    every other article of ``source`` listed as kept, as a full corpus read would list it."""
    version = source.version if source is not None else None
    if source is None or version is None or version.name != delta.base:
        raise CorpusStaleError("the index changed since the write was prepared against it; read it again")
    if not whole:
        return corpus
    touched = {a.doc_id for a in corpus.articles} | delta.removed
    kept = [Kept(d, h, 0) for d, h in source.stored() if d not in touched]
    return LoadReport(list(corpus.articles), list(corpus.skipped), kept)


def _stored(corpus: LoadReport, source: SearchIndex | None, *, expand: bool) -> LoadReport:
    """``corpus`` with its kept articles (not parsed) checked against ``source``, the index they were
    read from; with ``expand``, read from there into ``articles`` (a build that rewrites every article).
    CorpusStaleError when ``source`` does not hold them as they were read."""
    if not corpus.kept:
        return corpus
    stored = dict(source.stored()) if source is not None else {}
    if source is None or any(stored.get(k.doc_id) != k.digest for k in corpus.kept):
        raise CorpusStaleError("the index changed since the corpus was compared with it; read it again")
    if not expand:
        return corpus
    return LoadReport(corpus.in_order(lambda k: source.articles[k.doc_id]), list(corpus.skipped))


def _embed_new(
    encoder: Encoder,
    cache: EmbeddingCache,
    pending: list[tuple[str, list[int]]],
    texts: dict[int, str],
    vectors: Vectors,
    show_progress: bool,
) -> int:
    """Fill ``vectors`` for the passages of new or changed articles, from the cache or by embedding
    them in batches; every article is cached as soon as its batch is done. Returns how many were embedded.

    Articles of the same content (the same digest: a wire story filed under two ids) are embedded once
    and the copies take its vectors: embedded in two batches they would differ in the last bits (a
    batch's padding and quantisation change them), and the cache, keeping one of them, would give a
    rebuild other vectors than the first build had."""
    todo: list[tuple[str, list[int]]] = []
    first: dict[str, list[int]] = {}
    copies: list[tuple[list[int], list[int]]] = []  # (the copy's positions, those it copies)
    for digest, positions in pending:
        earlier = first.get(digest)
        if earlier is not None and len(earlier) == len(positions):
            copies.append((positions, earlier))
            continue
        first.setdefault(digest, positions)
        cached = cache.get(digest, len(positions))
        if cached is None:
            todo.append((digest, positions))
        elif positions:
            vectors[positions] = cached
    total = sum(len(positions) for _, positions in todo)
    # disable=None: a bar on a terminal only (not in pipes and CI logs)
    hidden = None if show_progress else True
    with tqdm(total=total, desc="embedding passages", unit="passage", disable=hidden) as bar:
        batch: list[tuple[str, list[int]]] = []
        size = 0
        for i, item in enumerate(todo):
            batch.append(item)
            size += len(item[1])
            if size < ENCODE_BATCH and i + 1 < len(todo):
                continue
            order = [p for _, positions in batch for p in positions]
            if order:
                vectors[order] = encoder.encode_passages([texts[p] for p in order])
            for digest, positions in batch:
                cache.put(digest, vectors[positions])
            bar.update(size)
            batch, size = [], 0
    for positions, source in copies:
        if positions:
            vectors[positions] = vectors[source]
    return total


def _previous(
    index_dir: Path, key: IndexKey, rebuild: bool, backend: PassageBackend, live: SearchIndex | None
) -> tuple[SearchIndex | None, bool]:
    """The live index to reuse (None if unusable), and whether its BM25 tokens are reusable. ``live`` is
    the caller's loaded snapshot: used when it is still the published one, so nothing is read again."""
    if rebuild:
        return None, False
    try:
        version = layout.current_version(index_dir)
        if version is None:
            return None, False
        published = live is not None and live.version is not None and live.version.name == version.name
        reuse = live if published else None
        if reuse is not None and reuse.manifest is not None:
            manifest = reuse.manifest
        else:
            manifest = Manifest.from_json(layout.read_manifest(version, verify=True))
        if manifest.key.dense != key.dense:
            log.info("model or chunking changed since the last build: every passage is embedded again")
            return None, False
        previous = reuse if reuse is not None else read_snapshot(version, manifest, backend, live)
        return previous, manifest.key.lexical == key.lexical
    except IndexStoreError as exc:
        log.warning("not reusing the existing index: %s", exc)
        return None, False


def sentence_tokens(tokenizer: ChineseTokenizer, text: str) -> list[list[str]]:
    """The tokens of each sentence of a passage's text, as the reranker splits and reads it."""
    return [tokenizer.tokens(s) for s in SENTENCE.findall(text)]


def write_segment_tables(folder: Path, tables: Tables) -> None:
    """Write a new segment's tables into its folder (not yet sealed)."""
    tables.save(folder)


@dataclass
class _Segment:
    """A new segment as a write assembles it: its articles and their titles' tokens, rows, tokens (the
    row's and its sentences'), and where each row's vector comes from (embedded now, or carried over from
    the previous snapshot)."""

    articles: list[tuple[Article, str]] = field(default_factory=list)
    titles: list[Sequence[str]] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    tokens: list[Sequence[str]] = field(default_factory=list)
    sentences: list[Sequence[Iterable[str]]] = field(default_factory=list)
    names: list[tuple[Sequence[str], Sequence[str]]] = field(default_factory=list)  # (people, places)
    carried: list[tuple[int, int]] = field(default_factory=list)  # (row here, row of the previous snapshot)
    pending: list[tuple[str, list[int]]] = field(default_factory=list)  # (article hash, rows to embed)

    def carry(self, previous: SearchIndex, article: Article, tokenizer: ChineseTokenizer | None) -> None:
        """Take an unchanged article's passages from ``previous``; ``tokenizer``: tokenise them again
        (when the tokenizer changed), else take the stored tokens."""
        self.articles.append((article, previous.hashes[article.doc_id]))
        self.titles.append(
            previous.title_tokens[article.doc_id] if tokenizer is None else tokenizer.tokens(article.title)
        )
        for row in previous.rows_by_doc.get(article.doc_id, []):
            self.carried.append((len(self.chunks), row))
            chunk = previous.chunks[row]
            self.chunks.append(chunk)
            if tokenizer is None:
                self.tokens.append(previous.tokens[row])
                self.sentences.append(previous.sentences[row])
                people, places = previous.names[row]
                self.names.append((sorted(people), sorted(places)))
            else:
                self.tokens.append(tokenizer.tokens(passage_text(chunk, article.title)))
                self.sentences.append(sentence_tokens(tokenizer, chunk.text))
                self.names.append(tokenizer.names(chunk.text))

    def tables(self) -> Tables:
        return Tables.encode(self.articles, self.chunks, self.tokens, self.sentences, self.titles, self.names)


def _write(
    index_dir: Path,
    *,
    key: IndexKey,
    backend: PassageBackend,
    previous: SearchIndex | None,
    kept: Sequence[tuple[SegmentTables, frozenset[str]]],
    position: int,
    segment: _Segment | None,
    fill: Callable[[dict[int, str], Vectors], int],
) -> tuple[Path, int, SearchIndex]:
    """Seal ``segment`` (if any) at ``position`` among the ``kept`` segments (each with its dead
    articles), then publish the version they make. ``fill`` embeds the segment's pending rows (given
    their texts by row of the segment) into its vectors and returns how many it embedded. Returns the
    version, that count and the published snapshot (its new segment's tables read back from disk)."""
    parts = list(kept)
    tables = None
    if segment is not None and segment.articles:
        folder = layout.new_segment_dir(index_dir)
        tables = SegmentTables(folder.name, "", folder, segment.tables())  # sealed below
        parts.insert(position, (tables, frozenset()))
    snapshot = assemble(parts)  # a seal is not part of the rows: this stays the snapshot's
    encoded = 0
    if segment is not None and tables is not None:
        first_row = sum(s.count for s in snapshot.segments[:position])
        titles = {a.doc_id: a.title for a, _ in segment.articles}
        local = {
            r: passage_text(segment.chunks[r], titles[segment.chunks[r].doc_id])
            for _, rows in segment.pending
            for r in rows
        }
        vectors = np.zeros((len(segment.chunks), key.dense.dim), dtype=np.float32)
        encoded = fill(local, vectors)
        texts = {first_row + r: text for r, text in local.items()}
        change = PassageWrite(
            snapshot.rows(),
            snapshot.segments[position],
            first_row,
            snapshot.articles,
            texts,
            vectors,
            segment.carried,
        )
        backend.write(previous.passages if previous is not None else None, change)
        write_segment_tables(tables.folder, tables.tables)
        meta = {"rows": len(segment.chunks), "articles": len(segment.articles)}
        seal = layout.seal_segment(tables.folder, meta)
        # Served from its file, as a reader would (mapped, not the lists it was encoded from).
        sealed = replace(tables, seal=seal, tables=Tables.load(tables.folder))
        parts[position] = (sealed, frozenset())
        snapshot = snapshot.with_segment(position, sealed)
    version = layout.new_version_dir(index_dir)
    manifest = Manifest(
        key=key,
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        counts=Counts(len(snapshot.articles), len(snapshot.chunks)),
        segments=tuple(SegmentRef(t.name, t.seal, dead) for t, dead in parts),
    )
    was = previous.passages if previous is not None else None
    passages = backend.open(version, manifest, snapshot.rows(), was)
    layout.seal_version(version, manifest.to_json())
    layout.publish(index_dir, version, [t.name for t, _ in parts])
    backend.published(was, passages)
    return version, encoded, SearchIndex(manifest, snapshot, passages, version)


def build_index(
    corpus: LoadReport,
    *,
    index_dir: Path,
    encoder: Encoder,
    tokenizer: ChineseTokenizer,
    key: IndexKey,
    chunking: dict[str, int],
    backend: PassageBackend,
    rebuild: bool = False,
    show_progress: bool = True,
    live: SearchIndex | None = None,
    delta: Delta | None = None,
) -> BuildReport:
    """Bring the index in ``index_dir`` up to date with ``corpus`` and publish it atomically.

    New and changed articles go into one new segment (only their passages are embedded); the replaced
    and removed ones are marked dead in the segments that hold them, which are not rewritten. After a
    rebuild, or when the tokenizer changed, every article goes into one new segment (the unchanged ones'
    vectors carried over). ``live``: the caller's loaded snapshot, reused when it is the published one.
    ``delta``: ``corpus`` is a write's articles only, against the version ``delta`` names (see ``Delta``);
    else it is the whole corpus, and every live article it does not hold is removed."""
    if delta is not None and rebuild:
        raise ValueError("a rebuild reads the whole corpus, not a write's articles")
    started = time.perf_counter()
    report = BuildReport(skipped=list(corpus.skipped))
    with layout.build_lock(index_dir):
        layout.remove_stale(index_dir)
        previous, tokens_reusable = _previous(index_dir, key, rebuild, backend, live)
        t0 = time.perf_counter()
        incremental = previous is not None and tokens_reusable
        source = previous if incremental else (live or previous)
        if delta is not None:
            corpus = _against(corpus, delta, source, whole=not incremental)
            delta = delta if incremental else None  # else a whole write: the others are listed as kept
        corpus = _stored(corpus, source, expand=not incremental)
        fresh: list[tuple[Article, str]] = []  # new or changed, in corpus order
        seen = {k.doc_id for k in corpus.kept}
        report.unchanged = len(corpus.kept)
        for article in corpus.articles:
            seen.add(article.doc_id)
            old = previous.hashes.get(article.doc_id) if previous is not None else None
            digest = article_hash(article)
            if old == digest:
                report.unchanged += 1
                continue
            (report.updated if old else report.added).append(article.doc_id)
            fresh.append((article, digest))
        if previous is not None and delta is not None:
            # Only the write's articles are looked up: the others stay, and are counted, not listed.
            report.removed = sorted(d for d in delta.removed - seen if d in previous.hashes)
            replaced = sum(1 for d in seen if d in previous.hashes)
            report.unchanged += previous.snapshot.article_count - replaced - len(report.removed)
        elif previous is not None:
            report.removed = sorted(set(previous.articles) - seen)
        report.timings["diff"] = time.perf_counter() - t0

        if previous is not None and not report.changed and tokens_reusable:
            report.articles, report.passages = len(previous.articles), len(previous.chunks)
            report.version = previous.version.name if previous.version else ""
            report.seconds = time.perf_counter() - started
            log.info("index is up to date (%d articles, %d passages)", report.articles, report.passages)
            return report

        segment = _Segment()
        kept: list[tuple[SegmentTables, frozenset[str]]] = []
        digests = {a.doc_id: d for a, d in fresh}
        if incremental:
            assert previous is not None and previous.manifest is not None
            gone = {a.doc_id for a, _ in fresh} | set(report.removed)
            refs = {r.name: r for r in previous.manifest.segments}
            for tables in previous.segments:
                dead = refs[tables.name].dead | {d for d in gone if tables.span(d) is not None}
                if len(dead) < tables.tables.count:  # a segment with no live article is dropped
                    kept.append((tables, frozenset(dead)))
        tokenize = chunk_time = tag = 0.0
        # A first build or a rebuild writes every article in the corpus's order; a write, the fresh ones.
        for article in [a for a, _ in fresh] if incremental else corpus.articles:
            fresh_digest = digests.get(article.doc_id)
            if fresh_digest is None:  # unchanged: its vectors are carried over, its tokens made again
                assert previous is not None
                t2 = time.perf_counter()
                segment.carry(previous, article, None if tokens_reusable else tokenizer)
                tokenize += time.perf_counter() - t2
                continue
            t1 = time.perf_counter()
            new_chunks = chunk_article(article, **chunking)
            t2 = time.perf_counter()
            segment.articles.append((article, fresh_digest))
            segment.titles.append(tokenizer.tokens(article.title))
            positions = []
            for chunk in new_chunks:
                positions.append(len(segment.chunks))
                segment.chunks.append(chunk)
                segment.tokens.append(tokenizer.tokens(passage_text(chunk, article.title)))
                segment.sentences.append(sentence_tokens(tokenizer, chunk.text))
                t3 = time.perf_counter()
                segment.names.append(tokenizer.names(chunk.text))
                tag += time.perf_counter() - t3
            tokenize += time.perf_counter() - t2
            chunk_time += t2 - t1
            segment.pending.append((fresh_digest, positions))
        report.timings["chunk"] = chunk_time
        report.timings["tokenize"] = tokenize - tag
        report.timings["tag"] = tag  # the people and places of each new passage

        # The same vectors whichever store keeps them: switching backends embeds nothing again.
        cache = EmbeddingCache(index_dir, key.dense.vectors_json(), encoder.dim)
        timings = report.timings

        def fill(texts: dict[int, str], vectors: Vectors) -> int:
            t = time.perf_counter()
            done = _embed_new(encoder, cache, segment.pending, texts, vectors, show_progress)
            timings["encode"] = time.perf_counter() - t
            return done

        t0 = time.perf_counter()
        version, report.encoded, published = _write(
            index_dir,
            key=key,
            backend=backend,
            previous=previous,
            kept=kept,
            position=len(kept),
            segment=segment,
            fill=fill,
        )
        report.index, snapshot = published, published.snapshot
        if delta is not None and previous is not None:
            # A write drops the vectors of the article versions it replaced or removed, unless a live
            # article has the same content (the same hash); a build prunes the whole cache.
            gone = {previous.hashes[d] for d in [*report.updated, *report.removed]}
            cache.drop(gone - snapshot.holding(gone))
        else:
            cache.prune(snapshot.live_hashes())
        report.timings["write"] = time.perf_counter() - t0 - report.timings.get("encode", 0.0)
    report.articles, report.passages = len(snapshot.articles), len(snapshot.chunks)
    report.version = version.name
    report.seconds = time.perf_counter() - started
    log.info(
        "index %s: %d articles, %d passages (%d added, %d updated, %d removed, %d passages embedded)",
        version.name,
        report.articles,
        report.passages,
        len(report.added),
        len(report.updated),
        len(report.removed),
        report.encoded,
    )
    return report


@dataclass(frozen=True)
class MergePolicy:
    """Which segments to merge: size-tiered over adjacent runs, so a merge never reorders rows (the
    snapshot's rows, and so every answer, stay exactly the same)."""

    max_segments: int = 8
    width: int = 4
    max_dead_share: float = 0.3

    def plan(self, sizes: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
        """The run of segments ``[start, end)`` to merge next, given each one's (live, stored) rows;
        None when the layout is fine as it is."""
        for i, (live, stored) in enumerate(sizes):
            if stored and (stored - live) / stored > self.max_dead_share:
                return i, i + 1  # mostly dead: rewritten alone, its dead rows dropped
        if len(sizes) <= self.max_segments:
            return None
        width = min(max(self.width, len(sizes) - self.max_segments + 1), len(sizes))
        costs = [sum(live for live, _ in sizes[i : i + width]) for i in range(len(sizes) - width + 1)]
        start = costs.index(min(costs))
        return start, start + width


@dataclass
class MergeReport:
    merged: int  # segments merged into one
    passages: int  # the live passages they held
    dropped: int  # dead passages left behind
    segments: int  # segments in the published version
    version: str
    seconds: float


def segment_sizes(index: SearchIndex) -> list[tuple[int, int]]:
    """Each segment's (live, stored) rows in ``index``."""
    refs = {r.name: r.dead for r in index.manifest.segments} if index.manifest else {}
    sizes = []
    for tables in index.segments:
        dead = refs.get(tables.name, frozenset())
        spans = [tables.span(d) for d in dead]
        sizes.append((tables.rows - sum(s[1] for s in spans if s is not None), tables.rows))
    return sizes


def merge_index(
    *,
    index_dir: Path,
    key: IndexKey,
    backend: PassageBackend,
    policy: MergePolicy,
    everything: bool = False,
    live: SearchIndex | None = None,
) -> MergeReport | None:
    """Merge the segments ``policy`` picks (with ``everything``: all of them, dead rows dropped) into one
    and publish the version made of it; None when there is nothing to merge. Nothing is embedded again
    and no row changes place: readers see the same passages before and after."""
    started = time.perf_counter()
    with layout.build_lock(index_dir):
        previous, tokens_reusable = _previous(index_dir, key, False, backend, live)
        if previous is None or not tokens_reusable or previous.manifest is None:
            return None  # no index, or one a build must bring up to date first
        sizes = segment_sizes(previous)
        if everything:
            dirty = len(sizes) > 1 or any(live_rows < stored for live_rows, stored in sizes)
            span = (0, len(sizes)) if dirty else None
        else:
            span = policy.plan(sizes)
        if span is None:
            return None
        start, end = span
        refs = previous.manifest.segments
        parts = [(t, r.dead) for t, r in zip(previous.segments, refs, strict=True)]
        segment = _Segment()
        for tables, dead in parts[start:end]:
            for doc_id in tables.doc_ids():  # in row order, as they were written
                if doc_id not in dead:
                    segment.carry(previous, previous.articles[doc_id], None)
        version, _, merged_index = _write(
            index_dir,
            key=key,
            backend=backend,
            previous=previous,
            kept=parts[:start] + parts[end:],
            position=start,
            segment=segment,
            fill=lambda texts, vectors: 0,
        )
        snapshot = merged_index.snapshot
    merged = sizes[start:end]
    report = MergeReport(
        merged=end - start,
        passages=sum(live_rows for live_rows, _ in merged),
        dropped=sum(stored - live_rows for live_rows, stored in merged),
        segments=len(snapshot.segments),
        version=version.name,
        seconds=time.perf_counter() - started,
    )
    log.info(
        "index %s: %d segments merged (%d passages, %d dead dropped); %d segments now",
        version.name,
        report.merged,
        report.passages,
        report.dropped,
        report.segments,
    )
    return report
