"""Normalisation for matching only: NFKC (full-/half-width), Traditional → Simplified, lower case.

Never used to compute offsets: citations always point into the original text.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from opencc import OpenCC

_T2S = OpenCC("t2s")
_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F))


def is_cjk(char: str) -> bool:
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


def cjk_ratio(text: str) -> float:
    letters = [c for c in text if not c.isspace()]
    return sum(is_cjk(c) for c in letters) / len(letters) if letters else 0.0


@lru_cache(maxsize=65536)
def to_simplified(text: str) -> str:
    if not any(is_cjk(c) for c in text):
        return text
    converted: str = _T2S.convert(text)
    return converted


@lru_cache(maxsize=32768)
def fold(text: str) -> str:
    """The form two strings are compared in: NFKC, Simplified Chinese, lower case. Cached: a question
    folds each candidate passage, its sentences and its context many times over."""
    return to_simplified(unicodedata.normalize("NFKC", text)).lower()


# A sentence of a passage: up to and including its end punctuation (full- or half-width) or a newline.
SENTENCE = re.compile(r"[^。！？!?；;\n]+[。！？!?；;]*")


def char_bigrams(text: str) -> set[str]:
    """The character pairs of the folded text, spaces removed: a segmentation-free overlap measure."""
    folded = "".join(fold(text).split())
    return {folded[i : i + 2] for i in range(len(folded) - 1)}
