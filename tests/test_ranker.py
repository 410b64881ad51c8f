"""The learned ranker: its features, its weights file, and the engine that uses it (fake encoder)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from qa.config import Settings
from qa.engine import Engine
from qa.errors import ConfigError
from qa.retrieval.gate import GATE_FEATURES, AnswerGate
from qa.retrieval.rerank import FEATURES, LinearRanker
from tests.conftest import ROOT

QUESTION = "胡志明市与中国多少个地方保持友好合作关系?"


def weights_file(path: Path, weights: dict[str, float], features: tuple[str, ...] = FEATURES) -> Path:
    path.write_text(
        json.dumps(
            {"features": list(features), "weights": [weights.get(f, 0.0) for f in features], "bias": 0}
        ),
        encoding="utf-8",
    )
    return path


def test_features_of_every_candidate(engine: Engine) -> None:
    snap = engine.indexing.current()
    query = snap.variants.expand(engine.queries.build(QUESTION))
    candidates = snap.searcher.search(query, 30)
    x = snap.reranker.features(query, candidates)
    assert x.shape == (len(candidates), len(FEATURES)) and np.isfinite(x).all()
    column = {name: x[:, i] for i, name in enumerate(FEATURES)}
    assert column["fused"].max() == pytest.approx(1.0) and (column["fused"] > 0).all()
    for share in ("coverage", "passage_coverage", "neighbour_coverage", "title_coverage", "entities"):
        assert ((column[share] >= 0) & (column[share] <= 1)).all(), share
    # a sentence covers no more of the question than its whole passage does
    assert (column["coverage"] <= column["passage_coverage"] + 1e-9).all()
    assert (column["dense_gap"] <= 0).all() and column["dense_gap"].max() == pytest.approx(0.0)
    assert set(np.unique(column["type_near"])) <= {0.0, 1.0}
    assert (column["type_near"] <= column["type"]).all()  # near the question's words implies in the passage
    best = candidates[int(np.argmax(column["coverage"]))]
    assert best.coverage == pytest.approx(column["coverage"].max())


def test_the_weights_decide_the_order(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    by_coverage = weights_file(tmp_path / "coverage.json", {"coverage": 1.0})
    settings = make_settings(retrieval={"ranker": "learned", "ranker_weights": str(by_coverage)})
    engine = Engine(settings).open(show_progress=False)
    snap = engine.indexing.current()
    query = snap.variants.expand(engine.queries.build(QUESTION))
    reranked = snap.reranker.rerank(query, snap.searcher.search(query, 30))
    coverages = [c.coverage for c in reranked]
    assert coverages == sorted(coverages, reverse=True)

    inverted = weights_file(tmp_path / "inverted.json", {"fused": -1.0})
    settings = make_settings(retrieval={"ranker": "learned", "ranker_weights": str(inverted)})
    engine = Engine(settings).open(show_progress=False)
    snap = engine.indexing.current()
    fused = snap.searcher.search(query, 30)
    score_of = {c.row: c.score for c in fused}
    ranked = [score_of[c.row] for c in snap.reranker.rerank(query, fused)]
    assert ranked == sorted(ranked) and ranked[0] < ranked[-1]  # the fused order, upside down


@pytest.mark.parametrize(
    "content",
    [
        None,  # no file
        "not json",
        json.dumps({"features": ["fused"], "weights": [1.0], "bias": 0}),  # fitted on other features
        json.dumps({"features": list(FEATURES), "bias": 0}),  # no weights
    ],
)
def test_unusable_weights_are_a_clear_config_error(
    make_settings: Callable[..., Settings], tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "ranker.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    settings = make_settings(retrieval={"ranker": "learned", "ranker_weights": str(path)})
    with pytest.raises(ConfigError, match=r"ranker weights .*fit_ranker"):
        Engine(settings)


def test_the_shipped_weights_fit_this_version_and_answer(make_settings: Callable[..., Settings]) -> None:
    shipped = ROOT / "qa" / "data" / "ranker.json"
    ranker = LinearRanker.load(shipped)
    assert len(ranker.weights) == len(FEATURES)
    assert json.loads(shipped.read_text(encoding="utf-8"))["fitted_on"]["sets"] == "train"
    engine = Engine(make_settings(retrieval={"ranker": "learned"})).open(show_progress=False)
    answer = engine.ask(QUESTION)
    assert answer.answerable and answer.hits
    assert engine.settings.ranker_weights_path == shipped


# -- the answer gate ------------------------------------------------------------------------------


def gate_file(path: Path, weights: dict[str, float], bias: float, threshold: float) -> Path:
    path.write_text(
        json.dumps(
            {
                "features": list(GATE_FEATURES),
                "ranker_features": list(FEATURES),
                "weights": [weights.get(f, 0.0) for f in GATE_FEATURES],
                "bias": bias,
                "threshold": threshold,
            }
        ),
        encoding="utf-8",
    )
    return path


def gated(make_settings: Callable[..., Settings], path: Path) -> Engine:
    settings = make_settings(
        retrieval={"ranker": "learned", "abstention": "learned", "gate_weights": str(path)}
    )
    return Engine(settings).open(show_progress=False)


def test_the_gate_decides_on_the_best_passage(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    # answers when the question's names are all in the article, abstains otherwise
    by_names = gate_file(tmp_path / "names.json", {"names_article": 10.0}, bias=-5.0, threshold=0.5)
    engine = gated(make_settings, by_names)
    answer = engine.ask(QUESTION)
    assert answer.answerable and answer.hits
    assert any(w.startswith("answer gate") for w in answer.hits[0].why)
    snap = engine.indexing.current()  # the gate never reorders: the hits are the ranker's order
    query = snap.variants.expand(engine.queries.build(QUESTION))
    ranked = snap.searcher.body_before_teaser(snap.reranker.rerank(query, snap.searcher.search(query, 30)))
    assert [(h.chunk.doc_id, h.chunk.start) for h in answer.hits] == [
        (snap.index.chunks[c.row].doc_id, snap.index.chunks[c.row].start) for c in ranked[: len(answer.hits)]
    ]
    absent = engine.ask("越南与日本东京的贸易额是多少?")
    assert not absent.answerable and absent.hits == ()
    assert absent.reason.startswith("最相关的文章没有提到") and "东京" in absent.reason  # a true reason

    never = gate_file(tmp_path / "never.json", {}, bias=-5.0, threshold=0.5)
    refused = gated(make_settings, never).ask(QUESTION)
    assert not refused.answerable and "可信度" in refused.reason


def test_the_gate_needs_the_learned_ranker(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match=r"needs retrieval\.ranker"):
        Engine(make_settings(retrieval={"abstention": "learned"}))


def test_an_unusable_gate_is_a_clear_config_error(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    stale = tmp_path / "gate.json"
    stale.write_text(json.dumps({"features": ["score"], "ranker_features": list(FEATURES)}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"answer gate .*fit_gate"):
        Engine(
            make_settings(
                retrieval={"ranker": "learned", "abstention": "learned", "gate_weights": str(stale)}
            )
        )


def test_the_shipped_gate_fits_this_version() -> None:
    shipped = ROOT / "qa" / "data" / "gate.json"
    gate = AnswerGate.load(shipped)
    assert len(gate.weights) == len(GATE_FEATURES) and 0 < gate.threshold < 1
    assert json.loads(shipped.read_text(encoding="utf-8"))["fitted_on"]["sets"] == "train"


def test_folded_sentences_are_each_sentence_folded(engine: Engine) -> None:
    """The reranker cuts a passage's folded sentences out of the folded passage where folding kept its
    length, and folds them one by one where it did not (℃ → °c, ½ → 1⁄2): either way each is the fold of
    its own sentence."""
    from qa.documents import NewDocument
    from qa.text.normalize import SENTENCE, fold

    engine.add_document(
        NewDocument(
            "folds",
            "氣溫達到３５℃，濕度½。越南ＧＤＰ增長７％！河內市民說：「很熱」？\n第二段落沒有標點",
            title="天氣",
            date="2025-01-02",
        )
    )
    index = engine.index
    snap = engine.indexing.current()
    lengths = set()
    for row in range(len(index)):
        text = index.chunks[row].text
        folded, sentences = snap.reranker._fold_sentences(row)
        assert folded == fold(text)
        assert sentences == tuple(fold(s) for s in SENTENCE.findall(text)), text
        lengths.add(len(folded) == len(text))
    assert lengths == {True, False}  # both ways were taken


def test_coverage_shares_are_the_plain_sums_of_the_held_terms_in_their_order() -> None:
    """Computed once per term set for all rows (numpy), they equal a Python sum over the terms held."""
    from qa.index.search_index import Presence
    from qa.retrieval.rerank import _Coverage

    words = ["a", "b", "c"]
    held = Presence(
        at={10: 0, 11: 1},
        sentence_bounds=[0, 2, 3],
        sentences=np.array([[1, 0, 1], [0, 1, 0], [1, 1, 1]], dtype=bool),
        passages=np.array([[1, 1, 1], [0, 1, 0]], dtype=bool),
        titles=np.array([[0, 0, 1], [1, 0, 0]], dtype=bool),
    )
    terms = {"c": 0.3, "a": 0.1, "b": 0.7}
    other = {"c": 0.3, "a": 0.1, "b": 0.7}  # equal, yet another dict: shares of its own
    focus = {"a": 2.0}

    def plain(row: list[bool], weights: dict[str, float]) -> float:
        return sum(w for t, w in weights.items() if row[words.index(t)]) / sum(weights.values())

    coverage = _Coverage(held, words)
    for weights in (terms, other, focus, terms):  # asked again: the same values
        sentences = [plain(list(r), weights) for r in held.sentences]
        top = max(sentences[:2])  # row 10's two sentences: the best share and where it first is
        assert coverage.best(10, weights) == (top, sentences.index(top))
        assert coverage.best(11, weights) == (sentences[2], 0)
        for row, at in held.at.items():
            assert coverage.passage(row, weights) == plain(list(held.passages[at]), weights)
            both = list(held.passages[at] | held.titles[at])
            assert coverage.passage(row, weights, with_title=True) == plain(both, weights)
            assert coverage.title(row, weights) == plain(list(held.titles[at]), weights)
    assert _Coverage(held, words).passage(10, {"a": 0.0}) == 0.0  # no weight at all: no share
