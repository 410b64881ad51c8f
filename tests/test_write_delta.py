"""A write (``add_document``, ``delete_document``) costs its articles, not the corpus: it hands the build a
delta against the loaded version instead of every article, yet makes the same index as a full corpus
read, still refuses a version that changed under it, and never drops a live article's vectors."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qa import indexing
from qa.config import Settings
from qa.documents import NewDocument
from qa.engine import Engine
from qa.errors import CorpusStaleError
from qa.index import builder, layout
from qa.index.builder import Delta, article_hash
from qa.index.embed_cache import CACHE_DIR
from qa.index.search_index import Assembled, SearchIndex, _Articles, _RowView
from qa.index.tables import Tables
from qa.ingest.loader import Kept, LoadReport
from qa.records import Article
from qa.retrieval.variants import CorpusPairs
from tests.test_segments import documents, settings_for


def bulk(settings: Settings, docs: list[NewDocument]) -> None:
    """The documents as one bulk JSONL file of the corpus."""
    with open(settings.corpus_dir / "bulk.jsonl", "w", encoding="utf-8") as out:
        for d in docs:
            out.write(
                json.dumps({"id": d.doc_id, "title": d.title, "text": d.text}, ensure_ascii=False) + "\n"
            )


def content(index: SearchIndex) -> dict[str, Any]:
    """Everything a question reads from an index, in row order, and the layout of its segments."""
    rows = range(len(index))
    manifest = index.manifest
    assert manifest is not None
    return {
        "stored": index.stored(),
        # the same article wherever its corpus folder is
        "articles": {d: replace(a, source=Path(a.source).name) for d, a in index.articles.items()},
        "chunks": [index.chunks[r] for r in rows],
        "tokens": [list(index.tokens[r]) for r in rows],
        "sentences": [index.sentences[r] for r in rows],
        "dead": [sorted(s.dead) for s in manifest.segments],
        "segment_docs": [t.doc_ids() for t in index.segments],
        "vectors": index.passages.vectors(list(rows)).round(6).tolist(),
    }


@pytest.fixture
def walks_forbidden(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], None]]:
    """``forbid(True)``: any walk over every article or row of a snapshot raises."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a write walked every article or row of the index")

    originals = {
        (Assembled, "stored"): Assembled.stored,
        (Assembled, "live_hashes"): Assembled.live_hashes,
        (_Articles, "__iter__"): _Articles.__iter__,
        (_RowView, "__iter__"): _RowView.__iter__,
        (Tables, "doc_ids"): Tables.doc_ids,
        (Tables, "hashes"): Tables.hashes,
    }

    def forbid(on: bool) -> None:
        for (owner, name), original in originals.items():
            monkeypatch.setattr(owner, name, refuse if on else original)

    yield forbid
    forbid(False)


def test_a_write_walks_no_article_but_its_own(
    make_settings: Callable[..., Settings], tmp_path: Path, walks_forbidden: Callable[[bool], None]
) -> None:
    settings = settings_for(make_settings, tmp_path)
    bulk(settings, documents(30))
    engine = Engine(settings).open()
    before = len(engine.index.articles)
    new, changed = documents(1, offset=40)[0], documents(1, offset=41)[0]
    walks_forbidden(True)
    engine.add_document(new)  # a new article
    engine.add_document(NewDocument(doc_id="doc-03", title="改写", text=changed.text))  # a replacement
    engine.delete_document("doc-07")  # a line of the bulk file
    engine.delete_document(new.doc_id)  # the whole segment of a write
    walks_forbidden(False)
    index = engine.index
    assert len(index.articles) == before - 1 and "doc-07" not in index.articles
    assert index.articles["doc-03"].title == "改写"
    hits = engine.ask("改写", top_k=10).hits
    assert all(h.chunk.doc_id not in {"doc-07", new.doc_id} for h in hits)


def listing_every_article(
    index: SearchIndex, articles: list[Article], removed: frozenset[str] = frozenset()
) -> tuple[LoadReport, Delta | None]:
    """A write as it was made before deltas: every other article of the index listed as kept."""
    touched = {a.doc_id for a in articles} | removed
    kept = [Kept(d, h, 0) for d, h in index.stored() if d not in touched]
    return LoadReport(articles, kept=kept), None


def test_a_write_makes_the_index_that_listing_every_article_made(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same writes as deltas and with every other article listed as kept (the way before) give the
    same rows, tokens, vectors, tombstones and embedding cache."""
    engines = []
    for name, way in (("delta", indexing._write_against), ("listed", listing_every_article)):
        monkeypatch.setattr(indexing, "_write_against", way)
        settings = settings_for(make_settings, tmp_path / name)
        bulk(settings, documents(12))
        engine = Engine(settings).open()
        for doc in documents(3, offset=20):
            engine.add_document(doc)
        engine.add_document(NewDocument(doc_id="doc-02", title="改写", text=documents(1, offset=30)[0].text))
        engine.add_document(documents(1, offset=20)[0])  # the same again: nothing to do
        engine.delete_document("doc-05")
        engine.delete_document("doc-21")
        engine.delete_document(sorted(engine.index.articles)[0])
        engines.append((engine, settings))
    (a, a_settings), (b, b_settings) = engines
    assert content(a.index) == content(b.index)
    assert cached(a_settings) == cached(b_settings) == set(a.index.hashes.values())


def test_a_delta_against_a_version_another_writer_replaced_is_refused(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_for(make_settings, tmp_path)
    reader = Engine(settings).open()
    stale = reader.index
    assert stale.version is not None
    Engine(settings).open().add_document(documents(1)[0])  # another engine publishes in between
    live = layout.read_pointer(settings.index_dir)
    late = documents(1, offset=5)[0]
    article = stale.articles[sorted(stale.articles)[0]]
    with pytest.raises(CorpusStaleError):
        builder.build_index(
            LoadReport([article]),
            index_dir=settings.index_dir,
            encoder=reader.encoder,
            tokenizer=reader.tokenizer,
            key=reader.indexing.index_key(),
            chunking=settings.chunking.kwargs(),
            backend=reader.indexing.backend,
            live=stale,
            delta=Delta(stale.version.name),
        )
    assert layout.read_pointer(settings.index_dir) == live  # nothing published
    # the engine itself reloads under the build lock first, so its own writes go on
    reader.add_document(late)
    assert {"doc-00", late.doc_id} <= set(reader.index.articles)


def cached(settings: Settings) -> set[str]:
    return {p.stem for p in (settings.index_dir / CACHE_DIR).rglob("*.npy")}


def test_a_write_drops_only_vectors_no_live_article_has(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_for(make_settings, tmp_path)
    engine = Engine(settings).open()
    doc = documents(1)[0]
    twin = NewDocument(doc_id="twin", title=doc.title, text=doc.text)  # the same content, the same hash
    engine.add_document(doc)
    engine.add_document(twin)
    digest = engine.index.hashes[doc.doc_id]
    assert engine.index.hashes["twin"] == digest and digest in cached(settings)
    engine.delete_document(doc.doc_id)
    assert digest in cached(settings)  # the twin still cites it
    changed = NewDocument(doc_id="twin", title="改写", text=documents(1, offset=3)[0].text)
    engine.add_document(changed)  # the replaced version's vectors go, the new one's stay
    assert digest not in cached(settings)
    assert set(engine.index.hashes.values()) <= cached(settings)
    # an orphan (a write that failed after embedding, say) is left to the next build, which prunes it
    orphan = settings.index_dir / CACHE_DIR
    folder = next(p for p in orphan.iterdir() if p.is_dir())
    np.save(folder / f"{'0' * 64}.npy", np.zeros((1, 64), dtype=np.float32))
    engine.delete_document(sorted(engine.index.articles)[0])
    assert "0" * 64 in cached(settings)
    (settings.corpus_dir / "extra.txt").write_text("新文章\n\n" + documents(1, offset=9)[0].text, "utf-8")
    engine.build()
    assert cached(settings) == set(engine.index.hashes.values())
    assert article_hash(engine.index.articles["twin"]) == engine.index.hashes["twin"]


def test_live_pair_counts_follow_tombstones_added_one_write_at_a_time(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A snapshot counts only its new tombstones' pairs (the older ones' are reused): the counts equal a
    fresh count of the same snapshot."""
    settings = settings_for(make_settings, tmp_path)
    bulk(settings, documents(12))
    engine = Engine(settings).open()

    def pairs_of(index: SearchIndex) -> set[str]:
        return {t[1:] for r in range(len(index)) for t in index.tokens[r] if len(t) == 3 and t[0] == "#"}

    every = pairs_of(engine.index)
    for victim in ["doc-03", "doc-04", "doc-09"]:
        engine.delete_document(victim)
        engine.add_document(NewDocument(doc_id="doc-01", title=victim, text=documents(1, offset=40)[0].text))
        every |= pairs_of(engine.index)
        reused = engine.indexing.current().pairs
        fresh = CorpusPairs.of_index(engine.index)
        assert {p: reused.count(p) for p in every} == {p: fresh.count(p) for p in every}


def test_the_snapshot_a_write_swaps_in_is_the_one_a_reader_loads(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """After a write the engine answers from the snapshot its build assembled (not read again): the
    same rows, tokens, vectors and tombstones as a new engine reading the published version."""
    settings = settings_for(make_settings, tmp_path)
    bulk(settings, documents(8))
    engine = Engine(settings).open()
    for doc in documents(2, offset=10):
        engine.add_document(doc)
    engine.delete_document("doc-03")
    engine.add_document(NewDocument(doc_id="doc-10", title="改写", text=documents(1, offset=20)[0].text))
    version = layout.current_version(settings.index_dir)
    assert engine.index.version == version
    assert content(engine.index) == content(Engine(settings).open().index)
