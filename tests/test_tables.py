"""The segment tables as memory-mapped arrays: rows read lazily are the records a build made, the stored
sentence token sets are jieba's (and rank as them), and an index of an older layout is built again."""

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


def test_stored_titles_and_their_tokens_are_the_articles_and_jieba_s(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    engine = Engine(settings_for(make_settings, tmp_path)).open()
    for doc in documents(2):  # articles of later segments, one carried by the merge below
        engine.add_document(doc)
    engine.delete_document(sorted(engine.index.articles)[0])
    for merged in (False, True):
        if merged:
            engine.compact()
        index = engine.index
        assert (len(index.segments) == 1) is merged
        for doc_id in index.articles:
            title = index.articles[doc_id].title
            assert index.titles[doc_id] == title
            assert list(index.title_tokens[doc_id]) == engine.tokenizer.tokens(title), doc_id
        with pytest.raises(KeyError):
            index.title_tokens["no-such-doc"]


def _tagged(engine: Engine, text: str) -> tuple[frozenset[str], frozenset[str]]:
    """What the reranker computed for each candidate of a person or place question before the names were
    stored: jieba's tagger over the passage."""
    found = engine.tokenizer.tagged(text)
    return (
        frozenset(w for w, tag in found if tag in {"nr", "nrfg", "nrt"}),
        frozenset(w for w, tag in found if tag == "ns"),
    )


def test_stored_names_are_what_the_tagger_finds(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """In rows of a first build, of later writes' segments, next to a dead row, and carried by a merge."""
    engine = Engine(settings_for(make_settings, tmp_path)).open()
    for doc in documents(2):
        engine.add_document(doc)
    engine.delete_document(sorted(engine.index.articles)[0])
    named = 0
    for merged in (False, True):
        if merged:
            engine.compact()
        index = engine.index
        assert (len(index.segments) == 1) is merged
        for row in range(len(index)):
            people, places = index.names[row]
            assert (people, places) == _tagged(engine, index.chunks[row].text), row
            named += bool(people) + bool(places)
    assert named > 0


def test_no_question_runs_the_tagger_over_a_passage(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Person and place questions answer as they did when each candidate was tagged on the question, and
    no passage is tagged while they are asked."""
    asked = [*QUESTIONS, "范明政总理会见了谁?", "越南和中国在哪里签署了协议?"]
    stored = [engine.ask(q) for q in asked]
    monkeypatch.setattr(Reranker, "_entities", lambda self, row: _tagged(engine, self.index.chunks[row].text))
    engine.reload()
    assert [engine.ask(q) for q in asked] == stored
    monkeypatch.undo()
    engine.reload()

    index, tag = engine.index, engine.tokenizer.tagged
    passages = {index.chunks[row].text for row in range(len(index))}

    def refuse_passages(text: str) -> list[tuple[str, str]]:
        """The tagger, failing on a passage (what ``names`` and any direct call go through)."""
        if text in passages:
            raise AssertionError(f"a passage tagged on a question: {text[:20]}")
        return tag(text)

    monkeypatch.setattr(engine.tokenizer, "tagged", refuse_passages)
    assert [engine.ask(q) for q in asked] == stored


def _share(present: frozenset[str], terms: dict[str, float]) -> float:
    """The IDF-weighted share of ``terms`` that ``present`` holds, summed in the terms' order."""
    total = sum(terms.values())
    return sum(w for t, w in terms.items() if t in present) / total if total else 0.0


class _Tokenised:
    """The reranker's coverage as it was computed before the stored ids: jieba's token set of every
    sentence, of every passage and of every title as strings, and the share summed over them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def best(self, row: int, terms: dict[str, float]) -> tuple[float, int]:
        best, at = 0.0, 0
        for i, present in enumerate(_jieba_sentences(self.engine, self.engine.index.chunks[row].text)):
            share = _share(present, terms)
            if share > best:
                best, at = share, i
        return best, at

    def _title(self, row: int) -> frozenset[str]:
        index = self.engine.index
        return frozenset(self.engine.tokenizer.tokens(index.articles[index.chunks[row].doc_id].title))

    def passage(self, row: int, terms: dict[str, float], *, with_title: bool = False) -> float:
        index = self.engine.index
        chunk = index.chunks[row]
        words = self.engine.tokenizer.tokens(passage_text(chunk, index.articles[chunk.doc_id].title))
        return _share(frozenset(words) | (self._title(row) if with_title else frozenset()), terms)

    def title(self, row: int, terms: dict[str, float]) -> float:
        return _share(self._title(row), terms)


def test_stored_sentence_and_title_tokens_rank_as_tokenising_each_question_did(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = [engine.ask(q) for q in QUESTIONS]
    monkeypatch.setattr(Reranker, "_covering", lambda self, rows, term_sets: _Tokenised(engine))
    engine.reload()  # a new pipeline, whose caches hold nothing yet
    assert [engine.ask(q) for q in QUESTIONS] == stored


@pytest.mark.parametrize("colliding", [False, True])
def test_coverage_from_stored_ids_is_the_share_of_the_token_sets(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, colliding: bool
) -> None:
    """Float for float, over rows of several segments (one with a dead row), words the corpus lacks,
    repeated and empty term sets; and with a hash of three values, under which most words collide."""
    if colliding:
        import qa.index.search_index
        import qa.index.tables

        for module in (qa.index.tables, qa.index.search_index):
            monkeypatch.setattr(module, "term_hash", lambda text: len(text) % 3)
    engine = Engine(settings_for(make_settings, tmp_path)).open()
    for doc in documents(2):
        engine.add_document(doc)
    engine.delete_document(sorted(engine.index.articles)[0])
    index = engine.index
    reranker = engine.indexing.current().reranker
    assert len(index.segments) > 1
    vocabulary = sorted({t for row in range(len(index)) for t in index.tokens[row]})
    rng = np.random.default_rng(7)
    reference = _Tokenised(engine)
    rows = list(range(len(index)))
    for trial in range(40):
        words = [str(w) for w in rng.choice(vocabulary, size=int(rng.integers(1, 12)), replace=False)]
        words += ["从未出现的词", "#龘龘"][: trial % 3]
        if trial % 2:  # words of titles, which the passages need not hold
            words += sorted({t for row in rows[::7] for t in reference._title(row)} - set(words))[
                trial % 5 :: 9
            ]
        terms = {w: float(rng.uniform(0.1, 9.0)) for w in words}
        other = {w: float(rng.uniform(0.1, 9.0)) for w in words[::2]}
        held = reranker._covering(rows, [terms, other, {}])
        for row in rows:
            for t in (terms, other):
                assert held.best(row, t) == reference.best(row, t), (row, t)
                for titled in (False, True):
                    got = held.passage(row, t, with_title=titled)
                    assert got == reference.passage(row, t, with_title=titled), (row, t, titled)
                assert held.title(row, t) == reference.title(row, t), (row, t)
            assert held.best(row, {}) == (0.0, 0) and held.passage(row, {}) == held.title(row, {}) == 0.0


def test_a_word_is_found_by_its_hash_and_confirmed_by_its_bytes(engine: Engine) -> None:
    from qa.text.terms import encode_term, term_hash

    tables = engine.index.segments[0].tables
    words = sorted({t for row in range(tables.rows) for t in tables.tokens(row)})
    encoded = [encode_term(w) for w in [*words, "不在词表里", "\ud800"]]
    hashes = np.array([term_hash(e) for e in encoded], dtype=np.uint64)
    ids = tables.word_ids(encoded, hashes)
    assert ids[-2:].tolist() == [-1, -1]
    assert [tables._words(np.array([i]))[0] for i in ids[:-2].tolist()] == words
    # A word whose hash collides with a stored one's is still not that word.
    assert tables.word_ids([b"impostor"], hashes[:1]).tolist() == [-1]


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


def test_an_index_of_an_older_format_is_built_again(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_for(make_settings, tmp_path)
    first = Engine(settings).open()
    answers = [first.ask(q) for q in QUESTIONS]
    version = layout.current_version(settings.index_dir)
    assert version is not None
    manifest = json.loads((version / layout.MANIFEST).read_text(encoding="utf-8"))
    older = layout.FORMAT_VERSION - 1  # 5: no stored names; 4: no stored titles
    (version / layout.MANIFEST).write_text(json.dumps({**manifest, "format": older}), encoding="utf-8")
    (settings.index_dir / layout.CURRENT).write_text(version.name)
    with pytest.raises(IndexFormatError, match=f"format {older}, this version reads {layout.FORMAT_VERSION}"):
        Engine(settings).open(build_if_missing=False)
    again = Engine(settings).open()
    assert again.index.version != version and [again.ask(q) for q in QUESTIONS] == answers
    again.add_document(documents(1)[0])
    assert documents(1)[0].doc_id in Engine(settings).open(build_if_missing=False).index.articles


def test_pairs_looked_up_together_count_as_one_at_a_time(engine: Engine) -> None:
    from qa.retrieval.variants import CorpusPairs

    tables = engine.index.segments[0].tables
    stored = [t[1:] for r in range(tables.rows) for t in tables.tokens(r) if len(t) == 3 and t[0] == "#"]
    held = sorted(set(stored))[::7]
    asked = [*held, "不在", "越南人", "越", "", held[0]]
    counts = tables.pair_counts(asked)
    assert counts.tolist() == [
        sum(1 for r in range(tables.rows) if f"#{p}" in tables.tokens(r)) for p in asked
    ]
    assert counts[: len(held)].min() > 0 and counts[len(held) : -1].tolist() == [0, 0, 0, 0]
    pairs = CorpusPairs.of_index(engine.index)
    assert pairs.holding(asked) == [p in pairs for p in asked] == [n > 0 for n in counts.tolist()]
    assert pairs.counts(asked) == [pairs.count(p) for p in asked]
