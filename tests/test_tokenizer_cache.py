"""The words of short texts are cached: the same words as jieba gives, and a caller's list is its own."""

from __future__ import annotations

from qa.text import tokenize
from qa.text.normalize import fold
from qa.text.tokenize import ChineseTokenizer
from tests.test_postag import seed_texts


def test_cached_words_are_jiebas_and_each_call_gets_its_own_list() -> None:
    tokenizer = ChineseTokenizer(names=["范明政"])
    lines = [line for text in seed_texts() for line in text.splitlines() if line.strip()]
    short = [line for line in lines if len(fold(line)) <= tokenize.SHORT_TEXT]
    assert short and len(short) < len(lines)  # both paths are taken
    first = [tokenizer.words(line) for line in lines]
    tokenizer._init()
    raw = tokenizer._jieba
    assert first == [[w for w in raw.lcut(fold(line)) if w.strip()] for line in lines]
    assert tokenizer._short_words.cache_info().currsize > 0
    again = tokenizer.words(short[0])
    again.append("改过")
    assert tokenizer.words(short[0]) == first[lines.index(short[0])]
    assert "范明政" in tokenizer.words("越南政府总理范明政会见中国客人")
