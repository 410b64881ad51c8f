"""The segment tables as memory-mapped arrays: rows read lazily are the records a build made, the stored
sentence token sets are jieba's, and an index of the JSONL layout is built again, not misread."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from qa.config import Settings
from qa.engine import Engine
from qa.errors import IndexFormatError
from qa.index import layout
from qa.index.search_index import SearchIndex, passage_text
from qa.index.tables import TABLE_FILE, Tables
from qa.ingest.chunker import chunk_article
from qa.ingest.loader import load_corpus
from qa.retrieval.rerank import Reranker
from qa.text.normalize import SENTENCE
from tests.test_segments import QUESTIONS, documents, settings_for


def _jieba_sentences(engine: Engine, text: str) -> tuple[frozenset[str], ...]:
    """What the reranker computed on every question before the sets were stored."""
    return tuple(frozenset(engine.tokenizer.tokens(s)) for s in SENTENCE.findall(text))


def test_rows_read_lazily_are_the_records_the_build_made(engine: Engine, fake_settings: Settings) -> None:
    index = engine.index
    corpus = load_corpus(fake_settings.corpus_dir, ["*.txt"], 1_000_000)
    assert sorted(index.articles) == sorted(a.doc_id for a in corpus.articles)
    expected = [c for a in corpus.articles for c in chunk_article(a, **fake_settings.chunking.kwargs())]
    assert list(index.chunks) == expected
    for article in corpus.articles:
        assert index.articles[article.doc_id] == article
        rows = index.rows_by_doc[article.doc_id]
        assert [index.chunks[r] for r in rows] == [c for c in expected if c.doc_id == article.doc_id]
        for r in rows:
            chunk = index.chunks[r]
            assert list(index.tokens[r]) == engine.tokenizer.tokens(passage_text(chunk, article.title))
    assert "no-such-doc" not in index.articles and index.rows_by_doc.get("no-such-doc") is None
    with pytest.raises(IndexError):
        index.chunks[len(index)]


def test_stored_sentence_tokens_are_what_jieba_gives(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    engine = Engine(settings_for(make_settings, tmp_path)).open()
    for doc in documents(2):  # rows of a second segment, and a dead row in the first
        engine.add_document(doc)
    engine.delete_document(sorted(engine.index.articles)[0])
    index = engine.index
    assert len(index.segments) > 1
    for row in range(len(index)):
        assert index.sentences[row] == _jieba_sentences(engine, index.chunks[row].text), row


def test_stored_sentence_tokens_rank_as_tokenising_each_question_did(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = [engine.ask(q) for q in QUESTIONS]

    def tokenised(self: Reranker, row: int) -> tuple[frozenset[str], ...]:
        return _jieba_sentences(engine, self.index.chunks[row].text)

    monkeypatch.setattr(Reranker, "_sentence_tokens", tokenised)
    engine.reload()  # a new pipeline, whose caches hold nothing yet
    assert [engine.ask(q) for q in QUESTIONS] == stored


def test_a_reloaded_index_answers_byte_for_byte_as_the_one_built(
    engine: Engine, fake_settings: Settings
) -> None:
    again = Engine(fake_settings).open(build_if_missing=False)
    for question in QUESTIONS:
        assert again.ask(question) == engine.ask(question)
    filtered = {"date_from": "2024-01-01", "date_to": "2025-12-31"}
    assert np.array_equal(again.index.mask(**filtered), _mask_by_articles(engine.index, **filtered))  # type: ignore[arg-type]
    some = sorted(engine.index.articles)[:2]
    assert np.array_equal(again.index.mask(doc_ids=some), _mask_by_articles(engine.index, doc_ids=some))  # type: ignore[arg-type]


def _mask_by_articles(
    index: SearchIndex,
    *,
    doc_ids: list[str] | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
) -> np.ndarray:  # type: ignore[type-arg]
    """The filter as it was computed before dates were arrays: article by article."""
    allowed = np.zeros(len(index), dtype=bool)
    for doc_id in doc_ids if doc_ids is not None else list(index.articles):
        date = index.articles[doc_id].date
        if (date_from or date_to) and date is None:
            continue
        if (date_from and date and date < date_from) or (date_to and date and date > date_to):
            continue
        allowed[list(index.rows_by_doc.get(doc_id, []))] = True
    return allowed


def test_loading_builds_no_row_or_article(engine: Engine, fake_settings: Settings) -> None:
    calls: list[int] = []
    index = Engine(fake_settings).open(build_if_missing=False).index
    for tables in index.segments:
        tables.tables.article = lambda i: calls.append(i)  # type: ignore[assignment,method-assign,misc,return-value]
    assert len(index) == len(engine.index) and len(index.articles) == 5
    assert calls == []


def test_tables_refuse_arrays_that_disagree(engine: Engine) -> None:
    folder = engine.index.segments[0].folder
    arrays = {name: np.array(array) for name, array in Tables.load(folder)._a.items()}  # not the map
    arrays["row_end"] = arrays["row_end"] + 100_000  # a passage beyond its article's text
    Tables(arrays).save(folder)
    with pytest.raises(ValueError, match="do not agree"):
        Tables.load(folder)
    (folder / TABLE_FILE).write_bytes((folder / TABLE_FILE).read_bytes()[:-3])
    with pytest.raises(ValueError, match="not a table file"):
        Tables.load(folder)


def test_the_jsonl_layout_of_format_2_is_built_again(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_for(make_settings, tmp_path)
    first = Engine(settings).open()
    answers = [first.ask(q) for q in QUESTIONS]
    version = layout.current_version(settings.index_dir)
    assert version is not None
    manifest = json.loads((version / layout.MANIFEST).read_text(encoding="utf-8"))
    (version / layout.MANIFEST).write_text(json.dumps({**manifest, "format": 2}), encoding="utf-8")
    (settings.index_dir / layout.CURRENT).write_text(version.name)
    with pytest.raises(IndexFormatError, match="format 2, this version reads 3"):
        Engine(settings).open(build_if_missing=False)
    again = Engine(settings).open()
    assert again.index.version != version and [again.ask(q) for q in QUESTIONS] == answers
    again.add_document(documents(1)[0])
    assert documents(1)[0].doc_id in Engine(settings).open(build_if_missing=False).index.articles
