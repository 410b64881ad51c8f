"""Folding for matching: the fast NFKC path is NFKC itself."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from qa.text.normalize import fold, nfkc


@settings(max_examples=3000, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(
            [chr(c) for c in range(0xFF00, 0xFF70)]
            + list(
                "\u3000，。、：；？！“”‘’《》（）…·—～①Ⅻ℃㎡ｶﾞｯ胡志明市與中國abcABC123 \u0301\u0308\u00c5\u212b\u2126"
            )
        ),
        max_size=40,
    )
    | st.text(max_size=40)
)
def test_nfkc_is_unicodedata_s(text: str) -> None:
    """The fast path (full-width characters mapped first) gives NFKC itself, also where a
    full-width letter is followed by a combining mark."""
    assert nfkc(text) == unicodedata.normalize("NFKC", text)


def test_fold_of_full_width_text() -> None:
    assert fold("ＡＢＣ，１２３％\u3000胡志明市與中國") == "abc,123% 胡志明市与中国"


# The edges of every CJK range, and the characters just outside them.
_EDGES = [
    chr(c)
    for lo, hi in ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F))
    for c in (lo - 1, lo, hi, hi + 1)
]


@given(st.text(alphabet=st.sampled_from(_EDGES) | st.characters(), max_size=12))
def test_the_regex_cjk_checks_are_is_cjk_s(text: str) -> None:
    from qa.text.normalize import all_cjk, has_cjk, is_cjk

    assert has_cjk(text) == any(is_cjk(c) for c in text)
    assert all_cjk(text) == (bool(text) and all(is_cjk(c) for c in text))
