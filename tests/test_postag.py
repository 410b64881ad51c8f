"""The numpy Viterbi decoder gives exactly jieba's tags: on the seeds' text and on random text."""

from __future__ import annotations

import random
import re
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import jieba
    import jieba.posseg
    from jieba.posseg.viterbi import viterbi as jieba_viterbi

from qa.text.postag import POSTokenizer, shared_viterbi

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
_RUN = re.compile("[\u4e00-\u9fd5]+")


def seed_texts() -> list[str]:
    return [path.read_text(encoding="utf-8") for path in sorted(SEEDS.iterdir()) if path.is_file()]


def jieba_decode(run: str) -> tuple[float, list[tuple[str, str]]]:
    p = jieba.posseg
    prob, route = jieba_viterbi(run, p.char_state_tab_P, p.start_P, p.trans_P, p.emit_P)
    return prob, list(route)


def test_the_decoder_equals_jiebas_on_every_run_of_the_seeds() -> None:
    runs = sorted({r for text in seed_texts() for r in _RUN.findall(text)})
    assert len(runs) > 300
    decode = shared_viterbi()
    for run in runs:
        assert decode(run) == jieba_decode(run), run


@pytest.mark.parametrize("seed", range(3))
def test_the_decoder_equals_jiebas_on_random_text(seed: int) -> None:
    """Random characters, rare ones and characters the model has no states for included: every
    branch of the decoder (unknown characters, no expected state, ties)."""
    rng = random.Random(seed)
    common = "".join(sorted({c for text in seed_texts() for c in _RUN.findall(text) for c in c}))
    alphabet = common + "".join(chr(c) for c in range(0x9F00, 0x9FD5))  # rare, mostly unknown to the model
    decode = shared_viterbi()
    for _ in range(300):
        run = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
        assert decode(run) == jieba_decode(run), run


def test_the_tokenizer_tags_as_jieba_does() -> None:
    def with_name() -> jieba.Tokenizer:  # each tagger takes the added tags over from its own tokenizer
        tokenizer = jieba.Tokenizer()
        tokenizer.initialize()
        tokenizer.add_word("范明政", freq=200, tag="nr")
        return tokenizer

    ours, theirs = POSTokenizer(with_name()), jieba.posseg.POSTokenizer(with_name())
    for text in seed_texts():
        for line in text.splitlines():
            assert [(w.word, w.flag) for w in ours.lcut(line)] == [
                (w.word, w.flag) for w in theirs.lcut(line)
            ]
