"""Near misses: a question about another edition, phase or year than the passage's (fake encoder)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from qa.config import Settings
from qa.engine import Engine
from qa.retrieval.qualifiers import Qualifier, conflicting, number, qualifiers


@pytest.mark.parametrize(
    ("text", "value"),
    [("13", 13), ("十三", 13), ("十", 10), ("二十", 20), ("一百零五", 105), ("两", 2), ("届", None)],
)
def test_numerals(text: str, value: int | None) -> None:
    assert number(text) == value


def test_what_the_question_qualifies() -> None:
    assert qualifiers("第13届泰国国际海湾之冠帆船赛irc1组的冠军是哪条船?") == [Qualifier("届", 13, "第13届")]
    assert qualifiers("第十二批指导性案例") == [Qualifier("批", 12, "第十二批")]
    assert qualifiers("垃圾焚烧发电项目二期的日处理量") == [Qualifier("phase-期", 2, "二期")]
    assert qualifiers("涉黑案的二审在哪一天宣判") == [Qualifier("phase-审", 2, "二审")]
    assert qualifiers("易见股份2016年的营业收入") == [Qualifier("年", 2016, "2016年")]
    assert qualifiers("近期、同期和长期的计划") == []  # 期 after no numeral is no phase
    assert qualifiers("上世纪90年代") == []


def test_the_nearest_context_naming_the_kind_decides() -> None:
    asked = qualifiers("第13届帆船赛的冠军是哪条船?")
    assert conflicting(asked, ["第14届帆船赛结束了全部赛程。", ""]) == asked
    assert conflicting(asked, ["第十三届帆船赛结束。", "第14届"]) == []  # the passage names the asked one
    assert conflicting(asked, ["帆船赛结束了全部赛程。", "第14届帆船赛"]) == asked  # the article's edition
    assert conflicting(asked, ["帆船赛结束了全部赛程。", "帆船赛"]) == []  # nothing says which edition
    # The article names its own edition most; a comparison with the asked one does not make it the topic.
    assert conflicting(asked, ["书展在徐州举行。", "第14届书展…第14届书展…比第13届多了1万种"]) == asked
    years = qualifiers("公司2016年的营业收入是多少?")
    assert conflicting(years, ["营收实现增长。", "2017年营收…2017年…2016年为"]) == []  # years stay lenient


@pytest.fixture
def regatta(make_settings: Callable[..., Settings], corpus_dir: Path) -> Engine:
    return with_article(
        make_settings,
        corpus_dir,
        "第14届泰国国际海湾之冠帆船赛落幕\n\n"
        "为期4天的第14届泰国国际海湾之冠帆船赛1日在芭提雅海湾结束了全部赛程,中国诺莱仕帆船队获得IRC1组亚军。"
        "该组冠军由泰国船队获得。\n",
        "regatta",
    )


def test_a_question_about_another_edition_is_not_answered(regatta: Engine) -> None:
    answer = regatta.ask("第13届泰国国际海湾之冠帆船赛IRC1组的亚军是哪支船队?")
    assert not answer.answerable and "第13届" in answer.reason
    answered = regatta.ask("第十四届泰国国际海湾之冠帆船赛IRC1组的亚军是哪支船队?")
    assert answered.answerable and answered.hits[0].chunk.doc_id == "regatta"


def test_a_series_number_tells_two_crafts_apart() -> None:
    asked = qualifiers("嫦娥五号探测器从月球带回了多少克月壤?")
    assert asked == [Qualifier("嫦娥号", 5, "嫦娥五号")]
    assert conflicting(asked, ["嫦娥四号月球背面软着陆。", ""]) == asked
    assert conflicting(asked, ["长征五号火箭发射嫦娥四号。", ""]) == asked  # another series says nothing
    assert qualifiers("5月五号地铁三号线") == []  # a day, a line


def test_which_university_asks_for_a_named_one() -> None:
    from qa.retrieval.categories import asked_category, names_one

    question = "成都高新减灾研究所的创始人王暾毕业于哪所大学?"
    category = asked_category(question)
    assert category is not None and category.noun == "大学"
    assert names_one(category, "王暾毕业于中国科学技术大学。", question)
    assert not names_one(category, "研究所成立于汶川地震后,创始人王暾。", question)
    company = asked_category("事故发生在哪家矿业公司?")
    assert company is not None and names_one(company, "白音华矿业公司的车辆超载。", "事故发生在哪家矿业公司?")
    own = asked_category("中兴高能技术有限责任公司的项目由哪家公司承建?")
    assert own is not None and not names_one(
        own, "中兴高能技术有限责任公司规划总投资76.7亿元。", "中兴高能技术有限责任公司的项目由哪家公司承建?"
    )
    assert asked_category("他在哪里工作?") is None and asked_category("哪条船获得冠军?") is None


def test_a_passage_naming_no_such_thing_does_not_answer(
    make_settings: Callable[..., Settings], corpus_dir: Path
) -> None:
    engine = with_article(
        make_settings,
        corpus_dir,
        "地震预警系统提前数十秒发出警报\n\n成都高新减灾研究所是一个民间研究机构,成立于汶川地震后,创始人王暾。"
        "其团队研发出地震预警系统,能提前数十秒发出警报。\n",
    )
    answer = engine.ask("成都高新减灾研究所的创始人王暾毕业于哪所大学?")
    assert not answer.answerable and "大学" in answer.reason
    assert engine.ask("成都高新减灾研究所的创始人是谁?").answerable


def test_how_many_square_metres_needs_an_area() -> None:
    from qa.retrieval.categories import asked_quantity, gives_quantity

    area = asked_quantity("山东文学馆的建筑面积是多少平方米?")
    assert area is not None and area.unit == "平方米"
    assert gives_quantity(area, "主展厅建筑面积达1.2万平方米。") and gives_quantity(area, "占地约80亩")
    assert not gives_quantity(area, "序厅形象墙采用浮雕设计的形式。")
    money = asked_quantity("总投资是多少亿元?")
    assert (
        money is not None
        and gives_quantity(money, "规划总投资76.7亿元")
        and not gives_quantity(money, "投资很大")
    )
    assert asked_quantity("他是哪国人?") is None and asked_quantity("有多少人参加?") is None
    for price in ("嫌疑人打算以每只多少钱卖给水族馆?", "瑞虎8的预售价格是多少?"):  # a price without its unit
        asked = asked_quantity(price)
        assert asked is not None and asked.unit == "元"
        assert gives_quantity(asked, "预售价12.98万元起") and not gives_quantity(asked, "开启了预售")
    assert gives_quantity(money, "被骗走37万余元") and gives_quantity(money, "共计三千多万元")


def test_nationality_and_surname_need_one_given() -> None:
    from qa.retrieval.categories import asked_category, names_one

    question = "携带起火充电宝的那名外籍乘客是哪国人?"
    nationality = asked_category(question)
    assert nationality is not None and nationality.noun == "国籍"
    assert not names_one(nationality, "起火原因是一名外籍乘客在行李中携带了一个充电宝。", question)
    assert names_one(nationality, "一名菲律宾籍乘客携带了充电宝。", question)
    assert names_one(nationality, "来自肯尼亚的选手包揽前三名。", "冠军是哪国人?")
    assert names_one(nationality, "一名美国人被捕。", "他是哪个国家的?")
    surname = asked_category("那名62岁的涉案司机姓什么?")
    assert surname is not None and surname.noun == "姓氏"
    assert not names_one(surname, "62岁的涉案司机被警方拘捕。", "那名62岁的涉案司机姓什么?")
    for text in ("司机陈某被捕。", "司机姓王。", "王姓司机被捕。"):
        assert names_one(surname, text, "那名62岁的涉案司机姓什么?"), text


def test_a_result_needs_a_time_or_score() -> None:
    from qa.retrieval.categories import asked_quantity, gives_quantity

    result = asked_quantity("2018年钦州国际半程马拉松男子组冠军跑出了什么成绩?")
    assert result is not None
    assert not gives_quantity(result, "来自肯尼亚的3名参赛选手包揽了男子半程马拉松前三名。")
    assert gives_quantity(result, "他以1小时03分夺冠。") and gives_quantity(result, "以1:03:25夺冠")
    score = asked_quantity("张帅以什么比分战胜对手?")
    assert score is not None and gives_quantity(score, "张帅以6-4、7-5获胜")


def test_the_enterprise_is_no_company_name() -> None:
    from qa.retrieval.categories import asked_category, names_one

    company = asked_category("事故发生在哪家矿业公司?")
    assert company is not None and not names_one(
        company, "发生事故的企业在网上非法购置车辆。", "事故发生在哪家矿业公司?"
    )


def test_a_passage_giving_no_such_number_does_not_answer(
    make_settings: Callable[..., Settings], corpus_dir: Path
) -> None:
    engine = with_article(
        make_settings,
        corpus_dir,
        "山东文学馆今天开馆\n\n山东文学馆今天在济南开馆,序厅形象墙采用浮雕设计的形式,展示山东文学发展的纵向历程。\n",
    )
    answer = engine.ask("山东文学馆的建筑面积是多少平方米?")
    assert not answer.answerable and "平方米" in answer.reason
    assert engine.ask("山东文学馆在哪里开馆?").answerable


def with_article(
    make_settings: Callable[..., Settings], corpus_dir: Path, text: str, doc_id: str = "extra"
) -> Engine:
    """An engine over the seeds and one more article, ``doc_id``."""
    (corpus_dir / f"{doc_id}.txt").write_text(text, encoding="utf-8")
    return Engine(make_settings()).open(show_progress=False)


def test_a_farther_passage_does_not_answer_for_a_closer_near_miss(
    make_settings: Callable[..., Settings], corpus_dir: Path
) -> None:
    """When the passages closest to the question tell of another edition, a passage from elsewhere that
    passes every check but is clearly farther from the question does not answer in their place."""
    from qa.retrieval.abstain import Decision
    from qa.retrieval.hybrid import Candidate

    (corpus_dir / "regatta.txt").write_text(
        "第14届泰国国际海湾之冠帆船赛落幕\n\n第14届泰国国际海湾之冠帆船赛1日在芭提雅海湾结束,"
        "中国诺莱仕帆船队获得IRC1组亚军。\n",
        encoding="utf-8",
    )
    (corpus_dir / "sailing.txt").write_text(
        "泰国帆船运动发展迅速\n\n泰国国际海湾之冠帆船赛吸引了众多船队参加,IRC1组的亚军争夺尤其激烈。\n",
        encoding="utf-8",
    )
    engine = Engine(make_settings()).open(show_progress=False)
    snap = engine.indexing.current()
    query = engine.queries.build("第13届泰国国际海湾之冠帆船赛IRC1组的亚军是哪支船队?")
    near_miss, other = (snap.index.rows_by_doc[d][0] for d in ("regatta", "sailing"))
    margin = engine.settings.retrieval.near_miss_margin

    def decide(other_cosine: float) -> Decision:
        candidates = [Candidate(near_miss, 1.0, 0.93), Candidate(other, 0.9, other_cosine)]
        return snap.grounding.decide(query, candidates)

    far = decide(0.93 - margin - 0.01)
    assert not far.answerable and "第13届" in far.reason
    assert far.ordered[-1].near_miss and not far.ordered[0].missing  # the order still puts it last
    close = decide(0.93 - margin / 2)
    assert close.answerable and snap.index.chunks[close.ordered[0].candidate.row].doc_id == "sailing"


def test_the_measure_a_how_many_question_asks_in() -> None:
    from qa.retrieval.categories import asked_measure
    from qa.retrieval.rerank import Reranker
    from qa.text.normalize import fold

    def holds(question: str, text: str) -> bool:
        measure = asked_measure(question)
        assert measure is not None, question
        return Reranker._measured(measure, text, fold(question))

    assert holds("沙霞新村一区总共住着多少户人家?", "一区共有21户人家") and not holds(
        "沙霞新村一区总共住着多少户人家?", "共有21人受伤"
    )
    assert holds("赤豆洋有多高?", "海拔1134米") and not holds("赤豆洋有多高?", "2018年")
    assert not holds("赤豆洋有多高?", "距离杭州40多公里") and holds("离杭州多远?", "40多公里")
    assert holds("一年最多卖出几头猪?", "最多卖出87头") and holds("有多少名工人?", "200余人")
    assert holds("赔给动漫公司多少钱?", "赔偿三万元")
    assert not holds("17户居民中有多少户受损?", "17户居民")  # the question's own number
    assert asked_measure("法院判了多重的刑?") is None and asked_measure("土地征收标准是多少?") is None
