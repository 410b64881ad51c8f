"""Romanised names in English and Vietnamese questions read back into the corpus's Chinese (fake encoder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.engine import Engine
from qa.retrieval.transliterate import Transliteration, syllables
from qa.retrieval.variants import CorpusPairs
from qa.text.tokenize import ChineseTokenizer

CORPUS = (
    "贵州省丹寨县整合财政涉农资金。河北张家口盛华化工公司附近发生爆燃。"
    "湖北证监局对陈立红内幕交易作出处罚。华为首席财务官孟晚舟在加拿大被捕。吃拿卡要问题受到整治。"
)


@pytest.fixture(scope="module")
def names() -> Transliteration:
    return Transliteration(CorpusPairs.of_tokens(ChineseTokenizer().tokens(CORPUS)))


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Sau khi huyện Đan Trại, Quý Châu thí điểm hợp nhất vốn, có bao nhiêu dự án?", ["丹寨", "贵州"]),
        ("Vụ nổ gần Công ty Thịnh Hoa ở Trương Gia Khẩu, Hà Bắc làm cháy bao nhiêu xe?", ["盛华", "张家口"]),
        ("What fine did the Hubei regulator impose on Chen Lihong?", ["湖北", "陈立红"]),
        ("After the arrest of Huawei CFO Meng Wanzhou, what happened?", ["华为", "孟晚舟"]),
        ("What did the Danzhai county do?", ["丹寨"]),  # one word, two syllables
    ],
)
def test_names_read_into_the_corpus_spelling(
    names: Transliteration, question: str, expected: list[str]
) -> None:
    found = names.names(question)
    assert all(name in found for name in expected), found


def test_only_capitalised_names_after_the_first_word_are_read(names: Transliteration) -> None:
    assert names.names("Huawei said nothing.") == []  # the first word is capitalised anyway
    assert names.names("What did the huawei phone cost?") == []  # common words are lower case
    assert names.names("What did Zhang say?") == []  # one syllable is too ambiguous
    assert names.names("What did Watson say?") == []  # not pinyin: nothing is invented
    assert names.names("Why did Mr Tran visit Hanoi?") == []  # readable, but the corpus has no such name


def test_a_word_translated_otherwise_is_not_read(names: Transliteration) -> None:
    assert "吃拿" in names.names("What does China export?")  # chi + na, spelled by the corpus
    assert names.names("What does China export?", known=lambda word: word == "China") == []


def test_pinyin_syllables_of_a_word() -> None:
    known = {s: ("x",) for s in ("xi", "an", "xian", "hua", "wei", "hu", "a")}
    assert sorted(map(tuple, syllables("xian", known, 4))) == [("xi", "an"), ("xian",)]
    assert ["hua", "wei"] in syllables("huawei", known, 4)
    assert syllables("watson", known, 4) == []


def test_a_chinese_question_is_left_as_it_is(engine: Engine) -> None:
    query = engine.queries.build("胡志明市与中国多少个地方保持友好合作关系?")
    snapshot = engine.indexing.current()
    assert snapshot.transliteration.expand(query, engine.queries.translated) is query


def test_an_english_question_finds_the_article_by_its_pinyin_name(
    make_settings: object, corpus_dir: Path
) -> None:
    (corpus_dir / "danzhai.txt").write_text(
        "丹寨县整合涉农资金\n\n2018年,丹寨县整合财政涉农资金,实施项目84个,总投资18.99亿元。\n",
        encoding="utf-8",
    )
    (corpus_dir / "leishan.txt").write_text(  # the same story in another county, its words more often
        "雷山县整合涉农资金\n\n2018年,雷山县整合涉农资金投资项目,实施项目84个,总投资12.5亿元。\n",
        encoding="utf-8",
    )
    engine = Engine(make_settings()).open(show_progress=False)  # type: ignore[operator]
    question = "How much did the 84 projects of Danzhai county invest in total?"
    snapshot = engine.indexing.current()
    query = engine.queries.build(question)
    expanded = snapshot.transliteration.expand(query, engine.queries.translated)
    assert "丹寨" in expanded.tokens and "丹寨" not in query.tokens

    def lexical(q: object) -> list[str]:
        found = snapshot.searcher.search(q, 50, None, None)  # type: ignore[arg-type]
        ranked = sorted((c.lexical_rank, c.row) for c in found if c.lexical_rank is not None)
        return [snapshot.index.chunks[row].doc_id for _, row in ranked]

    assert lexical(query)[0] == "leishan"  # the glossary's 项目 and 投资 alone prefer the other county
    assert lexical(expanded)[0] == "danzhai"


def test_a_written_article_adds_its_names_without_a_new_table(engine: Engine) -> None:
    from qa.documents import NewDocument

    before = engine.indexing.current().transliteration
    assert before.names("What did the Danzhai county do?") == []
    engine.add_document(NewDocument("danzhai", "丹寨县整合涉农资金\n\n丹寨县实施项目84个。"))
    after = engine.indexing.current().transliteration
    assert after is not before and "丹寨" in after.names("What did the Danzhai county do?")
    engine.delete_document("danzhai")
    assert engine.indexing.current().transliteration.names("What did the Danzhai county do?") == []
