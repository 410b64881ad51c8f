"""Segmented BM25: the scores of one bm25s index over the live rows, whatever the segments and tombstones."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import bm25s
import numpy as np
import numpy.typing as npt
import pytest

import qa.text.terms as terms
from qa.text.segment_bm25 import EMPTY_DOC, Postings, SegmentedBM25
from qa.text.tokenize import ChineseTokenizer
from tests.bm25s_reference import LexicalIndex

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
CHARS = "中国越南经济政府会议发展合作人民友好城市外交"
VOCABULARY = [a + b for a in CHARS for b in CHARS] + ["#" + a + b for a in CHARS[:8] for b in CHARS[:8]]
# bm25s fails on a query token "" (its own empty token); the tokenizer never makes one.
UNKNOWN = ["未知", "#未知", EMPTY_DOC]

Rows = list[list[str]]


def make_corpus(rng: random.Random, n: int, *, longest: int = 40) -> Rows:
    """Rows of Zipf-like tokens (so some are in most rows), with repeats and some empty rows."""
    weights = [1 / (rank + 1) for rank in range(len(VOCABULARY))]
    return [
        [] if rng.random() < 0.05 else rng.choices(VOCABULARY, weights, k=rng.randint(1, longest))
        for _ in range(n)
    ]


def make_queries(rng: random.Random, count: int) -> list[list[str]]:
    queries = []
    for _ in range(count):
        query = rng.choices(VOCABULARY + UNKNOWN, k=rng.randint(1, 8))
        queries.append(query + query[: rng.randint(0, 2)])  # repeated tokens count again
    return queries


def split(rows: Rows, rng: random.Random, segments: int) -> list[Rows]:
    """Uneven consecutive pieces, one of them a single row."""
    single = rng.randrange(1, len(rows) - 1)
    cuts = sorted({single, single + 1, *rng.sample(range(1, len(rows)), segments - 3)})
    bounds = [0, *cuts, len(rows)]
    pieces = [rows[a:b] for a, b in itertools.pairwise(bounds)]
    assert len(pieces) == segments and any(len(piece) == 1 for piece in pieces)
    return pieces


def segmented(pieces: Sequence[Rows]) -> SegmentedBM25:
    return SegmentedBM25([(Postings.build(piece), None) for piece in pieces])


def top(results: list[tuple[int, float]]) -> list[int]:
    return [row for row, _ in results]


@pytest.fixture(scope="module")
def corpus() -> Rows:
    return make_corpus(random.Random(7), 400)


def test_one_segment_scores_like_lexical_index(corpus: Rows) -> None:
    lexical = LexicalIndex.build(corpus)
    index = segmented([corpus])
    assert len(index) == lexical.size == len(corpus)
    for query in make_queries(random.Random(1), 200):
        np.testing.assert_allclose(index.scores(query), lexical.scores(query), rtol=1e-5)
        ours, theirs = index.search(query, 10), lexical.search(query, 10)
        # Rows may differ only among equal scores (bm25s leaves ties to argpartition).
        assert [score for _, score in ours] == [score for _, score in theirs]
        scores = lexical.scores(query)
        assert all(scores[row] == score for row, score in ours)


def test_scores_equal_bm25s_to_the_last_bit(corpus: Rows) -> None:
    lexical = LexicalIndex.build(corpus)
    index = segmented([corpus])
    for query in make_queries(random.Random(2), 100):
        np.testing.assert_array_equal(index.scores(query), lexical.scores(query))


def test_other_parameters_score_like_bm25s(corpus: Rows) -> None:
    retriever = bm25s.BM25(k1=1.2, b=0.5)
    retriever.index([row or [EMPTY_DOC] for row in corpus], show_progress=False)
    index = SegmentedBM25([(Postings.build(corpus), None)], k1=1.2, b=0.5)
    for query in make_queries(random.Random(3), 50):
        known = [token for token in query if token in VOCABULARY]
        expected = retriever.get_scores(known) if known else np.zeros(len(corpus))
        np.testing.assert_allclose(index.scores(query), expected, rtol=1e-5)


def test_real_chinese_passages_score_like_lexical_index() -> None:
    tokenizer = ChineseTokenizer()
    lines = [line for path in sorted(SEEDS.glob("*.txt")) for line in path.read_text("utf-8").splitlines()]
    rows = [tokenizer.tokens(line) for line in lines[:120]]
    assert any(not row for row in rows) and any(token.startswith("#") for row in rows for token in row)
    lexical = LexicalIndex.build(rows)
    whole = segmented([rows])
    pieces = segmented(split(rows, random.Random(4), 6))
    for question in ["胡志明市与中国哪些城市建立友好合作关系?", "越中建交多少周年", "中国驻越南大使是谁"]:
        tokens = tokenizer.tokens(question)
        np.testing.assert_allclose(whole.scores(tokens), lexical.scores(tokens), rtol=1e-5)
        np.testing.assert_allclose(pieces.scores(tokens), lexical.scores(tokens), rtol=1e-5)
        assert whole.search(tokens, 5) and top(pieces.search(tokens, 5)) == top(whole.search(tokens, 5))


def test_twenty_segments_score_like_one(corpus: Rows) -> None:
    rng = random.Random(5)
    whole = segmented([corpus])
    pieces = segmented(split(corpus, rng, 20))
    assert len(pieces) == len(corpus)
    for query in make_queries(rng, 300):
        np.testing.assert_allclose(pieces.scores(query), whole.scores(query), rtol=1e-5)
        assert pieces.search(query, 10) == whole.search(query, 10)
    for token in VOCABULARY + UNKNOWN:
        assert pieces.document_frequency(token) == whole.document_frequency(token)
    assert sorted(pieces.vocabulary()) == sorted(whole.vocabulary())


def tombstoned(rng: random.Random) -> tuple[Rows, SegmentedBM25]:
    """Corpus A, and A with the rows of a corpus B of longer rows over the same tokens, dead, put among them.

    A's rows keep their order, so global row i is row i of A; one segment holds only rows of B.
    """
    alive = make_corpus(rng, 250)
    dead = make_corpus(rng, 150, longest=90)
    labels = [True] * len(alive) + [False] * len(dead)
    rng.shuffle(labels)
    sources = {True: iter(alive), False: iter(dead)}
    mixed = [(next(sources[live]), live) for live in labels]
    bounds = [0, 13, 14, 60, 63, 70, 120, 121, 200, 260, 331, len(mixed)]
    pieces = [mixed[a:b] for a, b in itertools.pairwise(bounds)]
    pieces.insert(4, [(row, False) for row in dead[:9]])
    index = SegmentedBM25(
        [
            (Postings.build([row for row, _ in piece]), np.array([live for _, live in piece], dtype=bool))
            for piece in pieces
        ]
    )
    return alive, index


def test_dead_rows_change_no_statistic() -> None:
    rng = random.Random(6)
    alive, index = tombstoned(rng)
    lexical = LexicalIndex.build(alive)
    assert len(index) == len(alive)
    for query in make_queries(rng, 300):
        np.testing.assert_allclose(index.scores(query), lexical.scores(query), rtol=1e-5)
        assert [score for _, score in index.search(query, 10)] == [s for _, s in lexical.search(query, 10)]
    for token in VOCABULARY + UNKNOWN:
        df = sum(token in row for row in alive) if token != EMPTY_DOC else 0
        assert index.document_frequency(token) == df
        assert index.knows(token) == (df > 0)
    assert sorted(index.vocabulary()) == sorted({token for row in alive for token in row})


def test_a_frequency_counted_by_a_search_is_the_one_read_from_the_postings() -> None:
    """The reranker's IDF reads the frequency a search counted; with tombstones it must be the live
    count the postings give when no search came first."""
    _, searched = tombstoned(random.Random(6))
    _, fresh = tombstoned(random.Random(6))
    for token in VOCABULARY + UNKNOWN:
        searched.search([token], 5)
        assert token in searched._frequencies
        assert searched.document_frequency(token) == fresh.document_frequency(token)


def test_a_token_only_dead_rows_hold_is_unknown() -> None:
    index = SegmentedBM25(
        [
            (Postings.build([["越南", "中国"], ["孤词", "中国"]]), np.array([True, False])),
            (Postings.build([["孤词"], ["中国"]]), np.array([False, True])),
        ]
    )
    assert len(index) == 2
    assert not index.knows("孤词") and index.document_frequency("孤词") == 0
    assert index.document_frequency("中国") == 2
    assert sorted(index.vocabulary()) == ["中国", "越南"]
    assert not index.scores(["孤词"]).any() and index.search(["孤词"], 5) == []
    assert top(index.search(["中国", "越南"], 5)) == [0, 1]


def memory_mapped(array: npt.NDArray[np.generic]) -> bool:
    """Whether the array's memory is a file's map."""
    base: object = array
    while isinstance(base, np.ndarray):
        if isinstance(base, np.memmap):
            return True
        base = base.base
    return False


@pytest.mark.parametrize("pread", [False, True])
def test_save_and_load_memory_map_and_give_the_same_results(
    corpus: Rows, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pread: bool
) -> None:
    """Loaded postings are mapped; large ones (``PREAD_AT``: every one here when ``pread``) are read with
    pread instead, and nothing of their rows and frequencies becomes resident through the map."""
    import qa.text.segment_bm25 as segment_bm25

    if pread:
        monkeypatch.setattr(segment_bm25, "PREAD_AT", 0)
    rng = random.Random(8)
    pieces = [Postings.build(piece) for piece in split(corpus, rng, 5)]
    masks = [None, np.arange(len(pieces[1])) % 3 > 0, None, np.zeros(len(pieces[3]), dtype=bool), None]
    for i, postings in enumerate(pieces):
        postings.save(tmp_path / str(i))
    loaded = [Postings.load(tmp_path / str(i)) for i in range(len(pieces))]
    for before, after in zip(pieces, loaded, strict=True):
        assert memory_mapped(after.lengths)
        assert all(memory_mapped(a) is not pread for a in after.postings(0))
        assert len(after) == len(before) and after.vocabulary() == before.vocabulary()
        for term, token in enumerate(before.vocabulary()):
            assert after.term_id(token) == term
            np.testing.assert_array_equal(after.postings(term)[0], before.postings(term)[0])
            np.testing.assert_array_equal(after.postings(term)[1], before.postings(term)[1])
    built = SegmentedBM25(list(zip(pieces, masks, strict=True)))
    mapped = SegmentedBM25(list(zip(loaded, masks, strict=True)))
    for query in make_queries(rng, 100):
        np.testing.assert_array_equal(mapped.scores(query), built.scores(query))
        assert mapped.search(query, 10) == built.search(query, 10)
    if pread and Path("/proc/self/smaps").exists():
        from tests.test_ann_store import _resident_kb

        for i in range(len(pieces)):
            assert (
                _resident_kb(tmp_path / str(i) / "rows.npy")
                == _resident_kb(tmp_path / str(i) / "tf.npy")
                == 0
            )


def test_empty_segment_round_trips(tmp_path: Path) -> None:
    Postings.build([]).save(tmp_path / "empty")
    empty = Postings.load(tmp_path / "empty")
    assert len(empty) == 0 and empty.vocabulary() == [] and empty.term_id("中国") is None
    assert len(SegmentedBM25([(empty, None), (empty, np.zeros(0, dtype=bool))])) == 0


def saved(tmp_path: Path) -> Path:
    directory = tmp_path / "segment"
    Postings.build([["中国", "越南"], ["中国"]]).save(directory)
    return directory


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    directory = saved(tmp_path)
    (directory / "tf.npy").unlink()
    with pytest.raises(ValueError, match=r"tf\.npy"):
        Postings.load(directory)
    with pytest.raises(ValueError, match="lacks"):
        Postings.load(tmp_path / "absent")


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("rows", lambda path: path.write_bytes(b"not an npy file")),
        ("rows", lambda path: path.write_bytes(path.read_bytes()[:-4])),  # cut short
        ("tf", lambda path: path.write_bytes(b"")),
        # fewer postings than indptr says
        ("rows", lambda path: np.save(path, np.array([0], dtype=np.int32))),
        ("lengths", lambda path: np.save(path, np.array([2.0, 1.0]))),  # wrong dtype
        ("term_offsets", lambda path: np.save(path, np.array([0, 6], dtype=np.int64))),  # wrong shape
        ("term_hashes", lambda path: np.save(path, np.zeros((2, 1), dtype=np.uint64))),  # not 1-d
    ],
)
def test_a_corrupt_file_is_reported(tmp_path: Path, name: str, damage: Callable[[Path], object]) -> None:
    directory = saved(tmp_path)
    damage(directory / f"{name}.npy")
    with pytest.raises(ValueError, match=f"{name}|inconsistent"):
        Postings.load(directory)


def test_allowed_mask(corpus: Rows) -> None:
    rng = random.Random(9)
    index = segmented(split(corpus, rng, 7))
    allowed = np.array([rng.random() < 0.3 for _ in corpus])
    for query in make_queries(rng, 100):
        scores = np.where(allowed, index.scores(query), 0)
        results = index.search(query, 10, allowed)
        assert all(allowed[row] for row in top(results))
        expected = sorted(np.flatnonzero(scores > 0), key=lambda row: (-scores[row], row))[:10]
        assert top(results) == expected
    assert index.search(["中国"], 5, np.zeros(len(corpus), dtype=bool)) == []
    with pytest.raises(ValueError, match="allowed"):
        index.search(["中国"], 5, np.ones(3, dtype=bool))


def test_ties_go_to_the_lower_row_and_only_positive_scores_count() -> None:
    index = segmented([[["中国"]] * 4, [["越南"]], [["中国"]] * 3])
    assert top(index.search(["中国"], 3)) == [0, 1, 2]
    assert top(index.search(["中国"], 10)) == [0, 1, 2, 3, 5, 6, 7]
    assert top(index.search(["越南", "中国"], 2)) == [4, 0]
    assert index.search(["中国"], 0) == [] and index.search([], 3) == []
    assert index.search(["未知"], 3) == [] and index.search([""], 3) == []


def test_empty_rows_have_length_one_and_match_nothing() -> None:
    rows: Rows = [[], ["中国", "越南"], [EMPTY_DOC], ["中国", EMPTY_DOC, "中国"]]
    postings = Postings.build(rows)
    assert postings.lengths.tolist() == [1, 2, 1, 3]
    assert not postings.knows(EMPTY_DOC) and sorted(postings.vocabulary()) == ["中国", "越南"]
    index = SegmentedBM25([(postings, None)])
    lexical = LexicalIndex.build(rows)
    for query in [["中国"], [EMPTY_DOC], ["越南", "中国", "中国"]]:
        np.testing.assert_allclose(index.scores(query), lexical.scores(query), rtol=1e-5)
    assert not index.knows(EMPTY_DOC) and EMPTY_DOC not in index.vocabulary()


def test_no_segment_and_no_live_row() -> None:
    for index in [
        SegmentedBM25([]),
        SegmentedBM25([(Postings.build([["中国"], []]), np.zeros(2, dtype=bool))]),
    ]:
        assert len(index) == 0 and index.scores(["中国"]).shape == (0,)
        assert index.search(["中国"], 10) == [] and index.vocabulary() == []
        assert not index.knows("中国") and index.document_frequency("中国") == 0


def test_a_live_mask_must_fit_its_segment() -> None:
    postings = Postings.build([["中国"], ["越南"]])
    with pytest.raises(ValueError, match="live mask"):
        SegmentedBM25([(postings, np.ones(3, dtype=bool))])
    with pytest.raises(ValueError, match="live mask"):
        SegmentedBM25([(postings, np.ones(2, dtype=np.int8))])


def test_term_ids_are_found_for_every_term_and_none_else(corpus: Rows) -> None:
    postings = Postings.build(corpus)
    vocabulary = postings.vocabulary()
    assert sorted(vocabulary) == sorted({token for row in corpus for token in row})
    for term, token in enumerate(vocabulary):
        assert postings.term_id(token) == term and postings.knows(token)
        rows, tf = postings.postings(term)
        assert rows.tolist() == [i for i, row in enumerate(corpus) if token in row]
        assert tf.tolist() == [corpus[i].count(token) for i in rows.tolist()]
    for token in ["未知", "中", "中国越", "", EMPTY_DOC, "\ud800"]:
        assert postings.term_id(token) is None


def test_terms_sharing_a_hash_are_told_apart(
    corpus: Rows, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a hash of a few values, most terms collide: the stored text still finds the right one."""
    monkeypatch.setattr(terms, "term_hash", lambda text: len(text) % 3)
    Postings.build(corpus).save(tmp_path / "colliding")
    postings = Postings.load(tmp_path / "colliding")
    for term, token in enumerate(postings.vocabulary()):
        assert postings.term_id(token) == term
        assert postings.postings(term)[0].tolist() == [i for i, row in enumerate(corpus) if token in row]
    assert postings.term_id("未知") is None and postings.term_id("#未知") is None
    index = SegmentedBM25([(postings, None)])
    lexical = LexicalIndex.build(corpus)
    for query in make_queries(random.Random(10), 50):
        np.testing.assert_allclose(index.scores(query), lexical.scores(query), rtol=1e-5)


@pytest.mark.parametrize("budget", [0, 2_000, 1 << 30])
def test_cached_shares_score_as_fresh_ones_within_their_byte_budget(
    corpus: Rows, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """Whatever the cache holds (nothing, a few tokens evicted in turn, everything), the scores are
    those of an index asked each query once, and the cache never holds more bytes than allowed."""
    import qa.text.segment_bm25 as module

    pieces = split(corpus, random.Random(3), 5)
    queries = make_queries(random.Random(4), 120)
    fresh = [segmented(pieces).scores(query) for query in queries]
    monkeypatch.setattr(module, "SHARES_CACHE_BYTES", budget)
    index = segmented(pieces)
    for _ in range(2):
        for query, want in zip(queries, fresh, strict=True):
            np.testing.assert_array_equal(index.scores(query), want)
            held = sum(map(module._entry_bytes, index._cached.values()))
            assert held == index._cached_bytes <= budget
    assert (len(index._cached) == 0) is (budget == 0)
    if budget == 2_000:
        assert 0 < len(index._cached) < len({t for q in queries for t in q})  # some evicted
