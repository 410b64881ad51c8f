"""Written answers (generation.backend = "openai") against a scripted OpenAI-compatible stub server:
what is kept, what is removed and why, fallbacks when the server fails, and streaming."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from qa.config import Settings
from qa.engine import Engine
from qa.errors import GenerationUnavailableError
from qa.generation import generation_counters, metrics
from qa.generation.check import Evidence, SentenceChecker
from qa.generation.sentences import SentenceSplitter, canonical, markers, split_sentences
from qa.records import Chunk, Hit, Section
from qa.retrieval.gazetteer import Gazetteer
from qa.retrieval.query import AliasTable
from qa.text.tokenize import ChineseTokenizer
from tests.openai_stub import OpenAIStub

QUESTION = "截至2024年底,中国企业在胡志明市有多少个有效投资项目?"
GOOD_1 = "截至2024年底，中国企业在胡志明市的有效投资项目达835个。[1]"
GOOD_2 = "截至2024年11月，胡志明市与中国的进出口总额达217亿美元。[2]"
BAD_NUMBER = "中国企业在胡志明市的总投资额约为9.9亿美元。[1]"
NO_MARKER = "胡志明市与中国的合作前景十分广阔。"
OUT_OF_RANGE = "中国企业在胡志明市的有效投资项目达835个。[7]"
WRONG_PASSAGE = "胡志明市组织了3期干部培训班，分别赴广东、重庆和上海考察。[1]"


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as server:
        yield server


@pytest.fixture
def gen_settings(make_settings: Callable[..., Settings], stub: OpenAIStub) -> Callable[..., Settings]:
    def make(**generation: Any) -> Settings:
        values = {"backend": "openai", "base_url": stub.base_url, "model": "stub-model", "timeout_s": 2.0}
        return make_settings(generation={**values, **generation})

    return make


@pytest.fixture
def gen_engine(gen_settings: Callable[..., Settings], stub: OpenAIStub) -> Engine:
    stub.requests.clear()
    metrics.reset()
    return Engine(gen_settings()).open(show_progress=False)


# -- sentences and markers -----------------------------------------------------------------------------


def test_sentences_keep_their_markers_and_decimals() -> None:
    text = f"{GOOD_1} 总投资额约为3.44亿美元[1]。他说“很好”。[1, 2]\nEnglish too. [2] 最后一句"
    assert split_sentences(text) == [
        GOOD_1,
        "总投资额约为3.44亿美元[1]。",
        "他说“很好”。[1, 2]",
        "English too. [2]",
        "最后一句",
    ]
    assert split_sentences("Trade with the U.S. rose 5%. [1] Mr. Pham said so. [2]") == [
        "Trade with the U.S. rose 5%. [1]",
        "Mr. Pham said so. [2]",
    ]
    assert markers("甲。[1-3]【5】、[2]") == [1, 2, 3, 5]
    assert canonical("甲。[1, 2]") == "甲。[1][2]"


def test_a_streamed_sentence_is_complete_only_when_its_markers_are() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("达835个。") == []  # a marker may follow
    assert splitter.feed(" [") == []
    assert splitter.feed("1]") == []
    assert splitter.feed("截至") == ["达835个。 [1]"]
    assert splitter.feed("3.") == []  # perhaps a decimal point
    assert splitter.feed("44亿。[1]") == []
    assert splitter.close() == ["截至3.44亿。[1]"]
    text = f"{GOOD_1}{BAD_NUMBER}{NO_MARKER}"
    one_by_one = SentenceSplitter()
    pieces = [s for ch in text for s in one_by_one.feed(ch)] + one_by_one.close()
    assert pieces == split_sentences(text) == [GOOD_1, BAD_NUMBER, NO_MARKER]


# -- the check -------------------------------------------------------------------------------------------


def _hit(text: str, title: str = "标题", date: str | None = "2025-01-21") -> Hit:
    return Hit(Chunk("doc", Section.BODY, 0, len(text), text), 1.0, title, date)


@pytest.fixture(scope="module")
def checker() -> SentenceChecker:
    aliases = AliasTable([["范明政", "范明正"], ["胡志明市", "西贡"]])
    return SentenceChecker(ChineseTokenizer(aliases.names), aliases, Gazetteer(), min_overlap=0.25)


PASSAGES = [
    "截至2024年底,中國企業在胡志明市的有效投資項目達835個,總投資額約為3.44億美元。",  # Traditional
    "越南政府總理范明政表示,双边贸易额达1,900亿美元,增长十二个百分点。他称之为“历史新高”。",
]


@pytest.mark.parametrize(
    ("sentence", "reason"),
    [
        ("截至2024年底，中国企业在胡志明市的有效投资项目达835个。[1]", None),  # Simplified vs Traditional
        ("截至２０２４年底，中国企业在胡志明市的有效投资项目达８３５个。[1]", None),  # full-width digits
        ("范明正总理表示，双边贸易额达1900亿美元。[2]", None),  # an alias; 1,900 = 1900
        ("双边贸易额增长12个百分点，被称为“历史新高”。[2]", None),  # 十二 = 12
        ("中国企业在西贡的有效投资项目达835个。[1]", None),  # 西贡 is 胡志明市
        ("中国企业在胡志明市的总投资额约为3.44亿元。[1]", None),  # 亿 is the unit of 3.44, not a figure
        ("In 2024, Chinese firms had 835 projects in Ho Chi Minh City. [1]", None),  # numbers stay apart
        ("China's firms had 835 projects in Ho Chi Minh City's area. [1]", None),  # apostrophes
        ("In 2024, Chinese firms had 853 projects in Ho Chi Minh City. [1]", "number 853 is not in [1]"),
        ("中国企业在胡志明市的有效投资项目达853个。[1]", "number 853 is not in [1]"),
        ("截至2023年底，中国企业在胡志明市的有效投资项目达835个。[1]", "number 2023 is not in [1]"),
        ("双边贸易额达1,900亿美元，被称为“空前纪录”。[2]", "quoted “空前纪录” is not in [2]"),
        ("越南政府总理阮春福表示，双边贸易额达1900亿美元。[2]", "name 阮春福 is not in [2]"),
        ("中国企业在胡志明市的有效投资项目达835个。", "no citation marker"),
        ("中国企业在胡志明市的有效投资项目达835个。[3]", "cites [3], but there are 2 passages"),
        ("双边贸易额达1900亿美元。[1]", "number 1900 is not in [1]"),  # the wrong passage
        ("范明政表示两国人民的友谊源远流长、世代相传、牢不可破。[2]", "shares only"),
    ],
)
def test_check(checker: SentenceChecker, sentence: str, reason: str | None) -> None:
    evidence = [Evidence.of(n, _hit(p)) for n, p in enumerate(PASSAGES, start=1)]
    verdict = checker.check(sentence, evidence)
    if reason is None:
        assert verdict.supported, verdict.reason
    else:
        assert verdict.reason is not None and verdict.reason.startswith(reason), verdict.reason


def test_a_date_or_title_shown_with_the_passage_counts(checker: SentenceChecker) -> None:
    evidence = [Evidence.of(1, _hit(PASSAGES[0], title="胡志明市与中国企业合作", date="2025-01-21"))]
    assert checker.check(
        "据2025年1月21日报道，中国企业在胡志明市的有效投资项目达835个。[1]", evidence
    ).supported
    assert not checker.check(
        "据2025年1月22日报道，中国企业在胡志明市的有效投资项目达835个。[1]", evidence
    ).supported


def test_corpus_spellings_count(checker: SentenceChecker) -> None:
    evidence = [Evidence.of(1, _hit("阮富仲总书记表示,双方将加强合作。"))]
    assert not checker.check("阮福仲总书记表示，双方将加强合作。[1]", evidence).supported
    assert checker.check("阮福仲总书记表示，双方将加强合作。[1]", evidence, lambda name: ["阮富仲"]).supported


# -- the writer against the stub -------------------------------------------------------------------------


def test_supported_sentences_come_through_with_their_markers(gen_engine: Engine, stub: OpenAIStub) -> None:
    stub.script(f"{GOOD_1}\n{GOOD_2}")
    answer = gen_engine.ask(QUESTION, top_k=3, history=["胡志明市与中国的合作情况如何？"])
    assert answer.text == f"{GOOD_1}\n{GOOD_2}"
    assert answer.generation is not None
    assert answer.generation.model == "stub-model" and not answer.generation.fallback
    assert answer.generation.removed == () and answer.generation.error is None
    (request,) = stub.requests
    body = request["body"]
    assert body["model"] == "stub-model" and body["max_tokens"] == 400 and not body.get("stream")
    prompt = body["messages"][-1]["content"]
    assert QUESTION in prompt and "胡志明市与中国的合作情况如何？" in prompt
    for n, hit in enumerate(answer.hits, start=1):
        assert f"[{n}] 《{hit.title}》（{hit.date}）\n{hit.chunk.text.strip()}" in prompt
    assert "[4]" not in prompt
    assert generation_counters()["written"] == 1 and generation_counters()["sentences_kept"] == 2


def test_unsupported_sentences_are_removed_and_listed(gen_engine: Engine, stub: OpenAIStub) -> None:
    stub.script(f"{GOOD_1}{BAD_NUMBER}{NO_MARKER}{OUT_OF_RANGE}{WRONG_PASSAGE}{GOOD_2}")
    answer = gen_engine.ask(QUESTION, top_k=3)
    assert answer.text == f"{GOOD_1}\n{GOOD_2}"
    assert answer.generation is not None and not answer.generation.fallback
    removed = {r.sentence: r.reason for r in answer.generation.removed}
    assert removed == {
        BAD_NUMBER: "number 9.9 is not in [1]",
        NO_MARKER: "no citation marker",
        OUT_OF_RANGE: "cites [7], but there are 3 passages",
        WRONG_PASSAGE: "number 3 is not in [1]",
    }
    assert generation_counters()["sentences_removed"] == 4


def test_nothing_supported_gives_the_extractive_answer(gen_engine: Engine, stub: OpenAIStub) -> None:
    extractive = gen_engine.ask(QUESTION, top_k=3, write=False)
    stub.script(f"{BAD_NUMBER}{NO_MARKER}")
    answer = gen_engine.ask(QUESTION, top_k=3)
    assert answer.text == extractive.text and answer.hits == extractive.hits
    assert answer.generation is not None and answer.generation.fallback and answer.generation.error is None
    assert len(answer.generation.removed) == 2
    assert generation_counters()["fallback_unsupported"] == 1


@pytest.mark.parametrize(
    ("script", "kind"),
    [
        ({"delay": 3.0}, "timeout"),  # timeout_s = 2
        ({"status": 500}, "status_500"),
        ({"status": 503}, "status_503"),
        ({"malformed": True}, "malformed"),
        ({"content": "   "}, "malformed"),
    ],
)
def test_a_failing_server_gives_the_extractive_answer(
    gen_engine: Engine, stub: OpenAIStub, script: dict[str, Any], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    extractive = gen_engine.ask(QUESTION, top_k=3, write=False)
    stub.script(**script)
    exported = {"reason": kind}
    before = REGISTRY.get_sample_value("qa_generation_fallbacks_total", exported) or 0.0
    answer = gen_engine.ask(QUESTION, top_k=3)
    assert answer.text == extractive.text
    assert answer.generation is not None and answer.generation.fallback and answer.generation.error == kind
    assert generation_counters()["upstream_failures"] == 1
    assert generation_counters()[f"upstream_failures_{kind}"] == 1
    assert REGISTRY.get_sample_value("qa_generation_fallbacks_total", exported) == before + 1  # /metrics
    assert any("giving the extractive answer" in r.getMessage() for r in caplog.records)


def test_a_refused_connection_gives_the_extractive_answer(gen_settings: Callable[..., Settings]) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    metrics.reset()
    engine = Engine(gen_settings(base_url=f"http://127.0.0.1:{port}/v1")).open(show_progress=False)
    answer = engine.ask(QUESTION, top_k=3)
    assert answer.generation is not None and answer.generation.error == "connection"
    assert answer.text == engine.ask(QUESTION, top_k=3, write=False).text
    assert generation_counters()["upstream_failures_connection"] == 1


def test_the_model_is_never_asked_when_the_service_abstains(gen_engine: Engine, stub: OpenAIStub) -> None:
    stub.script(GOOD_1)
    answer = gen_engine.ask("越南与日本的贸易额是多少?")
    assert not answer.answerable and answer.generation is None
    assert gen_engine.write_stream(answer) is None
    assert stub.requests == []


def test_streaming_shows_only_checked_sentences(gen_engine: Engine, stub: OpenAIStub) -> None:
    stub.script(f"{GOOD_1}{BAD_NUMBER}{NO_MARKER}{GOOD_2}", piece=2)
    extractive = gen_engine.ask(QUESTION, top_k=3, write=False)
    stream = gen_engine.write_stream(extractive)
    assert stream is not None
    pieces = list(stream)
    assert pieces == [GOOD_1, f"\n{GOOD_2}"]
    assert stub.requests[-1]["body"]["stream"] is True
    assert stream.answer is not None and stream.answer.text == f"{GOOD_1}\n{GOOD_2}"
    assert stream.answer.generation is not None
    assert [r.sentence for r in stream.answer.generation.removed] == [BAD_NUMBER, NO_MARKER]


def test_a_stream_that_fails_first_gives_the_extractive_answer(gen_engine: Engine, stub: OpenAIStub) -> None:
    extractive = gen_engine.ask(QUESTION, top_k=3, write=False)
    for script, kind in (({"status": 500}, "status_500"), ({"content": GOOD_1, "cut": 1}, "malformed")):
        stub.script(**script)
        stream = gen_engine.write_stream(extractive)
        assert stream is not None
        assert list(stream) == [extractive.text]
        assert stream.answer is not None and stream.answer.generation is not None
        assert stream.answer.generation.fallback and stream.answer.generation.error == kind


def test_a_stream_cut_midway_keeps_what_was_shown(gen_engine: Engine, stub: OpenAIStub) -> None:
    stub.script(f"{GOOD_1}\n{GOOD_2}", piece=5, cut=len(GOOD_1) // 5 + 3)
    stream = gen_engine.write_stream(gen_engine.ask(QUESTION, top_k=3, write=False))
    assert stream is not None
    assert list(stream) == [GOOD_1]
    assert stream.answer is not None and stream.answer.text == GOOD_1
    assert stream.answer.generation is not None
    assert not stream.answer.generation.fallback and stream.answer.generation.error == "malformed"


def test_api_key_is_sent_as_a_bearer_token(gen_settings: Callable[..., Settings], stub: OpenAIStub) -> None:
    stub.script(GOOD_1)
    stub.requests.clear()
    Engine(gen_settings(api_key="sk-test")).open(show_progress=False).ask(QUESTION, top_k=3)
    assert stub.requests[-1]["auth"] == "Bearer sk-test"


def test_missing_openai_package_is_a_clear_error(
    gen_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # import openai → ImportError
    with pytest.raises(GenerationUnavailableError, match=r"zh-news-qa\[generation\]"):
        Engine(gen_settings())


def test_extractive_is_the_default(engine: Engine) -> None:
    assert engine.settings.generation.backend == "extractive" and engine.writer is None
    answer = engine.ask(QUESTION, top_k=3)
    assert answer.generation is None
    assert answer == engine.pipeline.ask(engine.indexing.live, QUESTION, top_k=3)


def test_bad_generation_settings_name_the_key(make_settings: Callable[..., Settings]) -> None:
    from qa.errors import ConfigError

    for bad in ({"backend": "gpt"}, {"timeout_s": 0}, {"base_url": "localhost:11434"}):
        with pytest.raises(ConfigError, match=r"generation\."):
            make_settings(generation=bad)


def test_repo_config_default_is_extractive(tmp_path: Path) -> None:
    from tests.conftest import settings_in

    assert settings_in(tmp_path).generation.backend == "extractive"


def test_a_fault_in_the_check_gives_the_extractive_answer(
    gen_engine: Engine, stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    assert gen_engine.writer is not None
    monkeypatch.setattr(gen_engine.writer.checker, "check", broken)
    stub.script(GOOD_1)
    extractive = gen_engine.ask(QUESTION, top_k=3, write=False)
    answer = gen_engine.ask(QUESTION, top_k=3)
    assert answer.text == extractive.text and answer.generation is not None
    assert answer.generation.fallback and answer.generation.error == "internal"
    stream = gen_engine.write_stream(extractive)
    assert stream is not None and list(stream) == [extractive.text]


def test_the_bot_sends_a_written_answer_with_its_citations(gen_engine: Engine, stub: OpenAIStub) -> None:
    from qa.bot import ask, format_answer

    stub.script(f"{GOOD_1}{BAD_NUMBER}{GOOD_2}")
    reply = ask(gen_engine, QUESTION)
    assert reply.answer is not None and reply.answer.text == f"{GOOD_1}\n{GOOD_2}"
    sent = "\n".join(format_answer(reply.answer, markdown=False, limit=4096))
    assert GOOD_1.removesuffix("[1]") in sent and GOOD_2.removesuffix("[2]") in sent
    assert "9.9亿" not in sent


THINKING = "<think>用户问的是项目数。也许是9.9亿美元[1]。</think>\n"


def test_a_reasoning_models_thinking_is_never_shown(gen_engine: Engine, stub: OpenAIStub) -> None:
    stub.script(f"{THINKING}{GOOD_1}")
    answer = gen_engine.ask(QUESTION, top_k=3)
    assert answer.text == GOOD_1 and answer.generation is not None and answer.generation.removed == ()
    stub.script(f"{THINKING}{GOOD_1}", piece=2)
    stream = gen_engine.write_stream(gen_engine.ask(QUESTION, top_k=3, write=False))
    assert stream is not None and list(stream) == [GOOD_1]


def test_thinking_cut_at_any_point_of_a_stream() -> None:
    from qa.generation.sentences import ThinkFilter, without_thinking

    text = f"前言。{THINKING}{GOOD_1}<thin"
    assert without_thinking(text) == f"前言。\n{GOOD_1}<thin"
    for size in (1, 2, 3, 7):
        think = ThinkFilter()
        shown = "".join(think.feed(text[i : i + size]) for i in range(0, len(text), size)) + think.close()
        assert shown == without_thinking(text)
    assert without_thinking("<think>never closed 9.9") == ""


def test_every_extractive_sentence_passes_the_check(engine: Engine, checker: SentenceChecker) -> None:
    """A sentence copied from its passage with its marker is supported: the check does not remove the
    text it should be compared with (every seed_dev question, fake encoder)."""
    import json

    from tests.conftest import ROOT

    # shared/eval beside the repository (or beside the folder of worktrees it is checked out in)
    found = [d / "shared/eval/seed_dev.jsonl" for d in (ROOT.parent, ROOT.parent.parent)]
    records = next((f for f in found if f.is_file()), None)
    questions = (
        [json.loads(line)["question"] for line in records.read_text(encoding="utf-8").splitlines()]
        if records is not None
        else [QUESTION, "胡志明市与中国多少个地方保持友好合作关系?", "2024年前11月越中双边贸易金额是多少?"]
    )
    checked = 0
    for question in questions:
        answer = engine.ask(question)
        evidence = [Evidence.of(n, hit) for n, hit in enumerate(answer.hits, start=1)]
        for line in answer.text.splitlines() if answer.answerable else []:
            verdict = checker.check(line, evidence)
            assert verdict.supported, (question, line, verdict.reason)
            checked += 1
    assert checked >= len(questions)
