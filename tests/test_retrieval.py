"""Retrieval behaviour with the fake encoder: lexical matching, aliases, history, filters, grounding."""

from __future__ import annotations

from pathlib import Path

from qa.engine import Engine, Filters
from qa.records import Section
from qa.retrieval.hybrid import rrf
from tests.conftest import seed_text


def top(engine: Engine, question: str, **kwargs: object) -> tuple[str, str]:
    answer = engine.ask(question, **kwargs)  # type: ignore[arg-type]
    assert answer.answerable, answer.reason
    return answer.hits[0].chunk.doc_id, answer.hits[0].chunk.text


def test_every_cited_passage_quotes_its_source(engine: Engine) -> None:
    answer = engine.ask("越南与中国的贸易额是多少?", top_k=10)
    assert answer.hits
    for hit in answer.hits:
        assert seed_text(hit.chunk.doc_id)[hit.chunk.start : hit.chunk.end] == hit.chunk.text
        assert hit.title == engine.index.articles[hit.chunk.doc_id].title


def test_traditional_question_finds_simplified_text(engine: Engine) -> None:
    doc, text = top(engine, "胡志明市與中國的進出口總額是多少?")
    assert doc == "000_a2194725df4ab5f6" and "217亿美元" in text


def test_name_variant_finds_the_other_spelling(engine: Engine) -> None:
    query = engine.queries.build("范明政总理出席的是第几届中国—东盟博览会?")
    assert "范明正" in query.dense_text
    assert "范明正" in query.tokens
    doc, text = top(engine, "范明政总理出席的是第几届中国—东盟博览会?")
    assert doc == "002_714598442bb43c6e" and "第20届" in text


def test_follow_up_borrows_the_topic_of_earlier_turns(engine: Engine) -> None:
    question = "双方打算重点关注哪些合作领域?"
    doc, text = top(engine, question, history=["胡志明市和上海举行了什么会议?"])
    assert doc == "004_9796523c0b21f5fd" and "金融中心、智慧城市和改革创新" in text
    answer = engine.ask(question, history=["河内市代表团在广东会见了哪些领导?"])
    assert "history: 河内市代表团在广东会见了哪些领导?" in answer.search_query


def test_history_is_bounded(engine: Engine) -> None:
    query = engine.queries.build("他是谁?", ["一", "二", "三", "四"])
    assert query.history_text == "三 四"


def test_filters_by_date_and_doc_id(engine: Engine) -> None:
    only = Filters(doc_ids=("003_de8d194c5a4a5bf1",))
    answer = engine.ask("越南与中国的贸易额是多少?", filters=only, top_k=10)
    assert answer.hits and {h.chunk.doc_id for h in answer.hits} == {"003_de8d194c5a4a5bf1"}
    dated = engine.ask("越南与中国的关系", filters=Filters(date_from="2025-01-01"), top_k=20)
    assert {h.chunk.doc_id for h in dated.hits} <= {"000_a2194725df4ab5f6", "001_53bd41b2b23f3bca"}
    old = engine.ask("越南与中国的关系", filters=Filters(date_to="2024-01-01"), top_k=20)
    assert {h.chunk.doc_id for h in old.hits} == {"002_714598442bb43c6e"}
    nothing = engine.ask("越南与中国的关系", filters=Filters(doc_ids=("no-such-doc",)))
    assert not nothing.answerable and nothing.hits == ()


def test_teaser_never_outranks_body_text_saying_the_same(engine: Engine, corpus_dir: Path) -> None:
    text = "越南高铁项目启动\n\n越南北南高速铁路项目于今年正式启动建设,总投资约670亿美元。\n\n相关新闻\n\n越南高铁 越南高铁\n\n越南北南高速铁路项目今年启动建设,总投资约670亿美元,全长1541公里。"
    (corpus_dir / "rail.txt").write_text(text, encoding="utf-8")
    engine.build()
    hits = engine.ask("越南北南高速铁路项目总投资多少?", top_k=10).hits
    rail = [h for h in hits if h.chunk.doc_id == "rail"]
    assert [h.chunk.section for h in rail] == [Section.BODY, Section.RELATED]


def test_related_teaser_is_labelled_and_found(engine: Engine) -> None:
    answer = engine.ask("2024年广西边境口岸的出入境人员达到多少人次?")
    hit = answer.hits[0]
    assert hit.chunk.doc_id == "001_53bd41b2b23f3bca" and "1431.2万人次" in hit.chunk.text
    assert hit.chunk.section is Section.RELATED
    assert hit.chunk.heading == "2024年越中人员跨境出行火热贸易合作兴旺"


def test_question_about_an_entity_the_corpus_never_mentions_abstains(engine: Engine) -> None:
    answer = engine.ask("越南与日本的贸易额是多少?")
    assert not answer.answerable
    assert answer.hits == ()
    assert "日本" in answer.reason and answer.text


def test_question_with_a_year_the_article_lacks_abstains(engine: Engine) -> None:
    assert not engine.ask("2019年广东和越南的进出口总额是多少?").answerable
    assert engine.ask("2023年广东和越南的进出口总额是多少?").answerable


def test_weighted_reciprocal_rank_fusion() -> None:
    fused = rrf([[(1, 0.9), (2, 0.5)], [(2, 3.0), (3, 1.0)]], [1.0, 0.5], k=60)
    assert fused[2] > fused[1] > fused[3]
    assert abs(fused[1] - 1 / 61) < 1e-12
