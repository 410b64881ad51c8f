"""``qa.text.dag.Tokenizer`` builds jieba's word graph and route, and so cuts and tags, as jieba does."""

from __future__ import annotations

import random

import jieba
import jieba.posseg
import pytest

from qa.text.dag import Tokenizer
from qa.text.postag import POSTokenizer
from tests.test_postag import seed_texts


def _pair() -> tuple[jieba.Tokenizer, Tokenizer]:
    theirs, ours = jieba.Tokenizer(), Tokenizer()
    for tokenizer in (theirs, ours):
        tokenizer.initialize()
        tokenizer.add_word("范明政", freq=200, tag="nr")
    return theirs, ours


def _lines() -> list[str]:
    return [line for text in seed_texts() for line in text.splitlines() if line.strip()]


def _assert_same_graph_and_route(theirs: jieba.Tokenizer, ours: Tokenizer, text: str) -> None:
    dag = theirs.get_DAG(text)
    assert ours.get_DAG(text) == dag, text
    route_theirs: dict[int, tuple[float, int]] = {}
    route_ours: dict[int, tuple[float, int]] = {}
    theirs.calc(text, dag, route_theirs)
    ours.calc(text, dag, route_ours)
    assert route_ours == route_theirs, text  # the same floats, not merely close ones


def test_graph_route_and_cuts_equal_jiebas_on_the_seeds() -> None:
    theirs, ours = _pair()
    for line in _lines():
        _assert_same_graph_and_route(theirs, ours, line)
        for hmm in (True, False):
            assert ours.lcut(line, HMM=hmm) == theirs.lcut(line, HMM=hmm), line
        assert ours.lcut_for_search(line) == theirs.lcut_for_search(line), line


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_graph_and_route_equal_jiebas_on_random_text(seed: int) -> None:
    """Runs of characters drawn from words, their prefixes and others: ties and one-character words."""
    theirs, ours = _pair()
    rng = random.Random(seed)
    alphabet = sorted({c for line in _lines() for c in line})
    for _ in range(300):
        _assert_same_graph_and_route(
            theirs, ours, "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        )


def test_tags_equal_jiebas() -> None:
    theirs, ours = _pair()
    tag_theirs, tag_ours = jieba.posseg.POSTokenizer(theirs), POSTokenizer(ours)
    for line in _lines():
        assert [(p.word, p.flag) for p in tag_ours.lcut(line)] == [
            (p.word, p.flag) for p in tag_theirs.lcut(line)
        ]
