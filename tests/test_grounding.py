"""Query understanding for grounding: entities, gazetteer, glossary, novel words (fake encoder)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from qa.config import Settings
from qa.engine import Engine
from qa.retrieval.gazetteer import Gazetteer, Glossary
from qa.retrieval.rerank import AnswerType, answer_type


@pytest.mark.parametrize(
    ("question", "names"),
    [
        ("越南与日本的贸易额是多少?", {"日本"}),
        ("日本首相什么时候访问越南?", {"日本"}),  # a place at the start of a longer word
        ("苹果公司的市值是多少?", {"苹果公司"}),  # an organisation by its suffix
        ("如何用Python读取CSV文件?", {"python", "csv"}),  # Latin terms in a Chinese question
        ("2019年广西的GDP是多少?", {"广西", "gdp", "2019"}),
        ("河内市干部培训班的结业式在广州哪所大学举行?", {"河内", "广州"}),  # 哪所大学 is no name
        ("越中两国是哪一天建立外交关系的?", set()),  # 中国/越南 are too common to require
        ("What is the capital of France?", {"法国"}),
        ("Who won the 2022 World Cup?", {"2022"}),
        ("Việt Nam và Nhật Bản ký hiệp định gì?", {"日本"}),
    ],
)
def test_entities_the_answer_must_mention(engine: Engine, question: str, names: set[str]) -> None:
    query = engine.queries.build(question)
    assert {group[0] for group in query.entities} == names


def test_alias_groups_are_one_entity(engine: Engine) -> None:
    query = engine.queries.build("何巍大使提出了哪些建议?")
    assert ("何炜", "何巍") in query.entities


def test_foreign_questions_get_chinese_terms(engine: Engine) -> None:
    query = engine.queries.build("Which Shanghai vice mayor held a video call with Ho Chi Minh City?")
    assert not query.chinese
    assert {"上海", "胡志明市", "副市长", "视频会议"} <= set(query.tokens)
    assert "副市长" in query.content_words  # "vice mayor" is read before "mayor"


def test_gazetteer_and_glossary() -> None:
    gazetteer = Gazetteer()
    assert [p.names[0] for p in gazetteer.in_foreign_text("trade with the United States and Japan")] == [
        "美国",
        "日本",
    ]
    assert gazetteer.in_foreign_text("Vietnamese") and gazetteer.in_foreign_text("Vietnamese")[0].generic
    assert gazetteer.in_words(["越南", "非常"]) and not any(
        p.names[0] == "南非" for p in gazetteer.in_words(["越南", "非常"])
    )
    glossary = Glossary()
    assert glossary.translate("Thủ tướng Phạm Minh Chính")[:1] == ["总理"]
    assert "贸易" in glossary.translate("bilateral trade")


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("广西壮族自治区党委书记是谁?", AnswerType.PERSON),
        ("胡志明市与中国多少个地方保持友好合作关系?", AnswerType.NUMBER),
        ("友谊关智慧口岸项目预计什么时候建成?", AnswerType.DATE),
        ("陈青敏是在什么地方会见何炜的?", AnswerType.PLACE),
        ("How many projects are there?", AnswerType.NUMBER),
        # 几 with any measure word, 多 with an adjective of size, a price or result asked for
        ("那个养猪户一年最多卖出几头猪?", AnswerType.NUMBER),
        ("柳师傅有几年的驾车经验?", AnswerType.NUMBER),
        ("法院判了多重的刑?", AnswerType.NUMBER),
        ("每斤能卖到什么价?", AnswerType.NUMBER),
        ("How old is the reporter?", AnswerType.NUMBER),
        ("What fine did the regulator impose on him?", AnswerType.NUMBER),
        ("他几乎每天都吃什么?", None),
        ("悬赏缉拿的嫌疑人叫什么名字?", AnswerType.PERSON),  # a person's name
        ("那家电影院叫什么?", None),
        ("胡志明市希望借鉴上海的哪个模式?", None),
    ],
)
def test_answer_types(question: str, kind: AnswerType | None) -> None:
    assert answer_type(question) is kind


def test_a_passage_naming_the_entity_but_not_the_role_does_not_answer(engine: Engine) -> None:
    # The seeds mention 泰国 only in a teaser about a Thai scholar, and 美国 only as 美国共产党.
    assert not engine.ask("泰国总理是谁?").answerable
    assert not engine.ask("越南与美国的贸易额是多少?").answerable


def test_a_word_the_corpus_never_has_makes_it_abstain(engine: Engine) -> None:
    answer = engine.ask("胡志明市的人口有多少?")
    assert not answer.answerable and "人口" in answer.reason


def test_name_variants_are_derived_from_sound_and_surname() -> None:
    from qa.retrieval.variants import CorpusPairs, NameVariants

    pairs = ["#阮文", "#文峰", "#文锋", "#袁文", "#陈青", "#青敏", "#合作", "#峰会"]
    variants = NameVariants(CorpusPairs.of_tokens(["阮文峰", "合作", *pairs]))
    assert variants.of("阮文锋") == ["阮文峰"]
    assert variants.of("阮文峰") == ["阮文锋"]
    assert variants.of("阮闻风") == ["阮文峰", "阮文锋"]  # every corpus spelling of the same sound
    assert variants.of("袁古洁") == []
    assert variants.of("Hanoi") == []


def test_a_derived_spelling_finds_the_article(engine: Engine) -> None:
    # Neither the alias table nor the gazetteer knows 黎光禾; the corpus writes 黎光和 (same sound).
    answer = engine.ask("黎光禾会见了哪个代表团?")
    assert answer.answerable, answer.reason
    assert "黎光和" in answer.hits[0].chunk.text


def test_a_fragment_of_two_words_is_not_a_word_the_corpus_lacks(engine: Engine) -> None:
    """jieba's HMM glues the ends of two words (火锅时 → 锅时); such a fragment says nothing of the corpus."""
    assert engine.tokenizer.known("人口") and engine.tokenizer.known("贸易")
    assert not engine.tokenizer.known("锅时") and not engine.tokenizer.known("判曹")
    snap = engine.indexing.current()
    query = engine.queries.build("河内的地铁有几条线路?")
    assert "地铁" in snap.grounding.novel_words(query)  # a real word the seeds never use
    fragment = query.__class__(**{**query.__dict__, "content_words": ["锅时", "地铁"]})
    assert snap.grounding.novel_words(fragment) == ["地铁"]


def test_names_given_by_the_articles_title_or_lead_need_not_be_repeated(engine: Engine) -> None:
    """The passage that answers need not repeat the place its article's title and lead give; a name that
    appears neither near it nor in its lead is still missing."""
    snap = engine.indexing.current()
    g = snap.grounding
    doc = "003_de8d194c5a4a5bf1"  # Hanoi's delegation in Guangdong: the lead names 广东 and 河内
    rows = snap.index.rows_by_doc[doc]
    late = rows[-1]
    query = engine.queries.build("河内市代表团在广东会见了谁?")
    assert [group[0] for group in query.entities] == ["河内", "广东"]
    assert not {"河内", "广东"} & set(g.missing(query, late))
    elsewhere = engine.queries.build("河内市代表团在东京会见了谁?")
    assert "东京" in g.missing(elsewhere, late)


@pytest.mark.parametrize(
    ("name", "present"), [("惠州市", True), ("景宁县", True), ("宁县", False), ("东京都", False)]
)
def test_a_place_may_drop_its_administrative_suffix(name: str, present: bool) -> None:
    from qa.retrieval.abstain import _mentions

    text = "惠州全市法院查获69名失信被执行人。景宁畲族自治县……景宁茶叶总产值"
    assert _mentions(text, name) is present


def test_only_words_of_what_is_asked_may_be_novel(engine: Engine) -> None:
    grounding = engine.indexing.current().grounding
    asked = engine.queries.build("胡志明市有几条地铁线路?")
    assert grounding.novel_words(asked) == ["地铁", "线路"]  # 几条 is the question word, not a topic
    # The asker's own words for the context (the corpus never says 掏出) are a paraphrase, not another topic.
    context = engine.queries.build("掏出手机的胡志明市官员说,胡志明市与中国多少个地方保持友好合作关系?")
    assert {"掏出", "手机"} <= set(context.content_words) and grounding.novel_words(context) == []


def test_a_year_of_the_background_may_be_anywhere_in_the_article(
    make_settings: Callable[..., Settings], corpus_dir: Path
) -> None:
    (corpus_dir / "fugitive.txt").write_text(
        "离职员工劫杀厂长妻儿 亡命26年终落网\n\n"
        "在杭州作案后潜逃26年的陆某,在张家港一家餐馆当厨师,用的假名是于强。\n\n"
        + "此前多年,他辗转多地打工,从不与家人联系。" * 24
        + "\n\n案发于1991年3月的最后一天。\n",
        encoding="utf-8",
    )
    engine = Engine(make_settings()).open(show_progress=False)
    answer = engine.ask("1991年在杭州作案后潜逃26年的陆某,当厨师时用的是什么假名?")
    assert answer.answerable, answer.reason
    assert answer.hits[0].chunk.doc_id == "fugitive" and "于强" in answer.hits[0].chunk.text
