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


def test_graph_route_and_cuts_equal_jiebas_on_the_seeds() -> None:
    theirs, ours = _pair()
    for line in _lines():
        dag = theirs.get_DAG(line)
        assert ours.get_DAG(line) == dag, line
        route_theirs: dict[int, tuple[float, int]] = {}
        route_ours: dict[int, tuple[float, int]] = {}
        theirs.calc(line, dag, route_theirs)
        ours.calc(line, dag, route_ours)
        assert route_ours == route_theirs, line  # the same floats, not merely close ones
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
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        dag = theirs.get_DAG(text)
        assert ours.get_DAG(text) == dag, text
        a: dict[int, tuple[float, int]] = {}
        b: dict[int, tuple[float, int]] = {}
        theirs.calc(text, dag, a)
        ours.calc(text, dag, b)
        assert a == b, text


def test_tags_equal_jiebas() -> None:
    theirs, ours = _pair()
    tag_theirs, tag_ours = jieba.posseg.POSTokenizer(theirs), POSTokenizer(ours)
    for line in _lines():
        assert [(p.word, p.flag) for p in tag_ours.lcut(line)] == [
            (p.word, p.flag) for p in tag_theirs.lcut(line)
        ]
