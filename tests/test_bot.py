"""The chat formatting (plain and Telegram MarkdownV2, split to a limit) and the Telegram webhook.

The webhook runs the real python-telegram-bot ``Bot`` (serialising sendMessage) over a fake transport:
no network is used.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from telegram.error import NetworkError
from telegram.helpers import escape_markdown as ptb_escape_markdown
from telegram.request import BaseRequest, RequestData

from qa.bot import BotReply, ask, format_answer, text_length
from qa.bot.format import QuestionAsker
from qa.bot.ptb import escape, escape_code
from qa.bot.store import BotStore
from qa.bot.telegram import (
    MAX_JSON_DEPTH,
    SECRET_HEADER,
    MalformedUpdate,
    TelegramRouter,
    json_depth_exceeds,
    parse_update,
    telegram_router,
)
from qa.config import Settings
from qa.engine import Engine
from qa.records import Answer, Chunk, Hit, Section
from tests.conftest import settings_in

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "胡志明市与中国多少个地方保持友好合作关系?"
SECRET = "s3cret"
MARKDOWN_SPECIAL = set("_*[]()~`>#+-=|{}.!\\")


# -- fixtures --------------------------------------------------------------------------------------------


def _settings(tmp: Path, **sections: dict[str, Any]) -> Settings:
    telegram = {
        "enabled": True,
        "secret_token": SECRET,
        "bot_token": "123:ABC",
        **sections.pop("telegram", {}),
    }
    return settings_in(tmp, telegram=telegram, **sections)


@pytest.fixture(scope="module")
def bot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bot")


@pytest.fixture(scope="module")
def settings(bot_dir: Path) -> Settings:
    return _settings(bot_dir)


@pytest.fixture(scope="module")
def engine(settings: Settings) -> Engine:
    return Engine(settings).open(show_progress=False)


@pytest.fixture(scope="module")
def answer(engine: Engine) -> Answer:
    result = engine.ask(QUESTION)
    assert result.answerable and len(result.hits) >= 3
    return result


def _hit(
    number: int, text: str, *, section: Section = Section.BODY, title: str = "标题", heading: str = ""
) -> Hit:
    start = 100 * number
    chunk = Chunk(f"doc{number}", section, start, start + len(text), text, heading)
    return Hit(chunk=chunk, score=1.0 / number, title=title, date="2024-05-06")


def _answer(*hits: Hit) -> Answer:
    lines = [f"{h.chunk.text[:20]} [{n}]" for n, h in enumerate(hits, start=1)]
    return Answer(question="问题?", answerable=True, hits=hits, text="\n".join(lines))


def _citation_lines(answer: Answer, *, markdown: bool) -> list[str]:
    """The citation line of each hit, as format_answer writes it with no limit."""
    (whole,) = format_answer(answer, markdown=markdown, limit=100_000)
    marker = re.compile(r"^\*\\\[(\d+)\\\]\*" if markdown else r"^\[(\d+)\] 《")
    lines = [line for line in whole.splitlines() if marker.match(line)]
    assert len(lines) == len(answer.hits)
    return lines


def check_markdown_v2(text: str, links: list[str] | None = None) -> str:
    """Fail unless ``text`` is well-formed MarkdownV2 using only bold, code, blockquote and inline-link
    markup. Returns the text as Telegram would display it (markup removed, escapes resolved); the URL of
    each ``[label](url)`` is appended to ``links`` when given."""
    shown: list[str] = []
    bold = code = label = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            assert i + 1 < len(text), "a trailing backslash"
            following = text[i + 1]
            if code:
                assert following in "`\\", f"needless escape {following!r} in code at {i}"
            else:
                assert following in MARKDOWN_SPECIAL, f"escape of a plain character {following!r} at {i}"
            shown.append(following)
            i += 2
            continue
        if char == "`":
            code = not code
        elif code:
            shown.append(char)
        elif char == "*":
            bold = not bold
        elif char == ">" and (i == 0 or text[i - 1] == "\n"):
            pass  # a blockquote line
        elif char == "[" and not label:
            label = True
        elif char == "]" and label:
            label = False
            assert text[i + 1 : i + 2] == "(", f"a link label without its URL at {i}"
            url, i = _link_url(text, i + 2)
            if links is not None:
                links.append(url)
            continue
        else:
            assert char not in MARKDOWN_SPECIAL, (
                f"unescaped {char!r} at {i}: {text[max(0, i - 20) : i + 20]!r}"
            )
            shown.append(char)
        i += 1
    assert not bold and not code and not label, "an entity is left open"
    return "".join(shown)


def _link_url(text: str, i: int) -> tuple[str, int]:
    """The URL of an inline link starting at ``text[i]`` (only ``\\`` and ``)`` escaped), and the index
    after its closing parenthesis."""
    url: list[str] = []
    while i < len(text) and text[i] != ")":
        if text[i] == "\\":
            assert text[i + 1] in "\\)", f"needless escape {text[i + 1]!r} in a link at {i}"
            i += 1
        url.append(text[i])
        i += 1
    assert i < len(text), "a link URL left open"
    return "".join(url), i + 1


# -- formatting ------------------------------------------------------------------------------------------


# The hand-written escaping that PTB's helper replaced (qa/bot/format.py before issue 14), kept here as
# the reference it must agree with.
OLD_MARKDOWN_SPECIAL = re.compile(r"([\\_*\[\]()~`>#+\-=|{}.!])")
OLD_CODE_SPECIAL = re.compile(r"([\\`])")
ESCAPE_CASES = [
    r"a_b*c[d]e(f)g~h`i>j#k+l-m=n|o{p}q.r!s\t 中文。（全角）",
    "_*[]()~`>#+-=|{}.!\\",
    "2024-05-06",
    "000_a2194725df4ab5f6:562-676",
    "《越中关系》（2025年1月21日） — 胡志明市!",
    "https://example.com/a_(b)?c=1&d=[2]#x",
    "",
    "😀 emoji, \n newlines\r\n and\ttabs",
]


@pytest.mark.parametrize("text", ESCAPE_CASES)
def test_ptb_escaping_agrees_with_the_old_hand_written_one(text: str) -> None:
    assert escape(text) == OLD_MARKDOWN_SPECIAL.sub(r"\\\1", text) == ptb_escape_markdown(text, version=2)
    assert escape_code(text) == OLD_CODE_SPECIAL.sub(r"\\\1", text)


@hypothesis.settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(text=st.text(st.sampled_from("_*[]()~`>#+-=|{}.!\\ a中。") | st.characters()))
def test_ptb_escaping_agrees_on_any_text(text: str) -> None:
    assert escape(text) == OLD_MARKDOWN_SPECIAL.sub(r"\\\1", text)
    assert escape_code(text) == OLD_CODE_SPECIAL.sub(r"\\\1", text)


def test_the_hand_written_escaping_is_gone() -> None:
    import qa.bot
    import qa.bot.format

    assert not hasattr(qa.bot, "escape_markdown") and not hasattr(qa.bot.format, "escape_markdown")
    source = (ROOT / "qa" / "bot" / "format.py").read_text(encoding="utf-8")
    assert 're.compile(r"([\\\\_*' not in source


def test_plain_answer_has_numbered_citations(answer: Answer) -> None:
    (message,) = format_answer(answer, markdown=False, limit=4096)
    assert "\\" not in message and "*" not in message
    assert message.splitlines()[0].endswith("[1]")
    for number, hit in enumerate(answer.hits, start=1):
        chunk = hit.chunk
        line = next(line for line in message.splitlines() if line.startswith(f"[{number}] "))
        assert f"《{hit.title}》" in line
        assert hit.date is None or hit.date in line
        assert f"{chunk.doc_id}:{chunk.start}-{chunk.end}" in line
        assert " ".join(chunk.text.split()) in message  # the passage is quoted whole


def test_markdown_answer_is_escaped_and_well_formed(answer: Answer) -> None:
    (message,) = format_answer(answer, markdown=True, limit=4096)
    shown = check_markdown_v2(message)
    for number, hit in enumerate(answer.hits, start=1):
        chunk = hit.chunk
        assert f"[{number}] 《{hit.title}》" in shown
        assert f"`{chunk.doc_id}:{chunk.start}-{chunk.end}`" in message  # a code entity
    dated = [h.date for h in answer.hits if h.date]
    assert dated and dated[0].replace("-", "\\-") in message  # MarkdownV2 reserves "-"
    plain = format_answer(answer, markdown=False, limit=4096)[0]
    assert shown.replace("“", "").replace("”", "") == plain.replace("“", "").replace("”", "").replace(
        "\n  ", "\n"
    )


@pytest.mark.parametrize("markdown", [False, True])
@pytest.mark.parametrize("limit", [150, 260, 400, 1000])
def test_split_never_breaks_a_citation(answer: Answer, markdown: bool, limit: int) -> None:
    citations = _citation_lines(answer, markdown=markdown)
    parts = format_answer(answer, markdown=markdown, limit=limit)
    assert len(parts) > 1
    for part in parts:
        assert 0 < text_length(part) <= limit
        if markdown:
            check_markdown_v2(part)
    for citation in citations:  # each citation line whole, in exactly one part
        assert sum(citation in part.splitlines() for part in parts) == 1, citation
    markers = re.findall(r"^\*?\\?\[(\d+)\\?\]\*? 《", "\n".join(parts), re.MULTILINE)
    assert markers == [str(n) for n in range(1, len(answer.hits) + 1)]


def test_one_block_longer_than_the_limit_cuts_only_its_quote() -> None:
    long_text = "越南与中国的合作不断深化。" * 200
    answer = _answer(_hit(1, long_text, title="一篇很长的文章"), _hit(2, "短段落。"))
    for markdown in (False, True):
        citation = _citation_lines(answer, markdown=markdown)[0]
        parts = format_answer(answer, markdown=markdown, limit=300)
        block = next(p for p in parts if citation in p.splitlines())
        assert text_length(block) <= 300
        assert block.rstrip("”").endswith("…")
        assert all(text_length(p) <= 300 for p in parts)
        assert any("短段落" in p for p in parts)


def test_limit_is_counted_in_utf16_units() -> None:
    answer = _answer(_hit(1, "😀" * 300))  # each emoji is two UTF-16 units
    parts = format_answer(answer, markdown=False, limit=200)
    assert all(text_length(p) <= 200 for p in parts)
    assert max(len(p) for p in parts) < 200


def test_a_limit_too_small_for_a_citation_line_is_an_error() -> None:
    answer = _answer(_hit(1, "正文。", title="很长的标题" * 30))
    with pytest.raises(ValueError, match="limit"):
        format_answer(answer, markdown=False, limit=100)


def test_related_teaser_is_labelled() -> None:
    answer = _answer(_hit(1, "预告正文。", section=Section.RELATED, heading="另一篇新闻"))
    (message,) = format_answer(answer, markdown=False, limit=4096)
    assert "相关新闻" in message and "另一篇新闻" in message


def test_abstention_says_no_answer_and_why(engine: Engine) -> None:
    reply = ask(engine, "特朗普在哪里演讲?")
    assert not reply.answerable and reply.answer is not None
    for markdown in (False, True):
        (message,) = reply.messages(markdown=markdown, limit=4096)
        shown = check_markdown_v2(message) if markdown else message
        assert "无法回答" in shown and "No answer" in shown
        assert reply.answer.reason and reply.answer.reason in shown
        assert "[1]" not in shown


def test_ask_turns_a_rejected_question_into_a_reply(engine: Engine) -> None:
    reply = ask(engine, "   ")
    assert reply.answer is None and reply.error
    (message,) = reply.messages(markdown=True, limit=4096)
    assert "问题无效" in check_markdown_v2(message)


def test_ask_passes_history(engine: Engine) -> None:
    seen: list[tuple[str, ...]] = []

    class Recording:
        def ask(self, question: str, *, history: Sequence[str] = ()) -> Answer:
            seen.append(tuple(history))
            return engine.ask(question, history=history)

    reply = ask(Recording(), "有多少个?", history=[QUESTION])
    assert isinstance(reply, BotReply)
    assert seen == [(QUESTION,)]


# -- the Telegram webhook --------------------------------------------------------------------------------


class FakeRequest(BaseRequest):
    """A Bot API transport that records each call and answers like Telegram would, without a network."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.reject_markdown = False
        self.fail_sends = False  # every sendMessage fails as if the network were down
        self.flood = 0  # the next sendMessage calls answered 429 Too Many Requests (retry after 1 s)
        self.pending: list[dict[str, Any]] = []  # updates the next getUpdates hands out (once)
        self.webhook_url = ""

    @property
    def read_timeout(self) -> float | None:
        return 1.0

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        endpoint = url.rsplit("/", 1)[-1]
        params = dict(request_data.parameters) if request_data else {}
        self.calls.append((endpoint, params))
        result: Any = True
        if endpoint == "getMe":
            result = {"id": 123, "is_bot": True, "first_name": "QA", "username": "qa_news_bot"}
        elif endpoint == "getUpdates":
            result, self.pending = self.pending, []
            if not result:
                await asyncio.sleep(0.02)  # a long poll that found nothing
        elif endpoint == "setWebhook":
            self.webhook_url = params["url"]
        elif endpoint == "deleteWebhook":
            self.webhook_url = ""
        elif endpoint == "getWebhookInfo":
            result = {"url": self.webhook_url, "has_custom_certificate": False, "pending_update_count": 0}
        elif endpoint == "sendMessage":
            if self.flood:
                self.flood -= 1
                body = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
                        "parameters": {"retry_after": 1}}  # fmt: skip
                return 429, json.dumps(body).encode()
            if self.fail_sends:
                raise NetworkError("the network is down")
            if self.reject_markdown and params.get("parse_mode") == "MarkdownV2":
                body = {"ok": False, "error_code": 400, "description": "Bad Request: can't parse entities"}
                return 400, json.dumps(body).encode()
            result = {
                "message_id": len(self.calls),
                "date": 1700000000,
                "chat": {"id": params["chat_id"], "type": "private"},
                "text": params["text"],
            }
        return 200, json.dumps({"ok": True, "result": result}).encode()

    def sent(self) -> list[dict[str, Any]]:
        return [params for endpoint, params in self.calls if endpoint == "sendMessage"]


class RecordingEngine:
    """The engine, remembering the history each question was asked with."""

    def __init__(self, engine: QuestionAsker) -> None:
        self.engine = engine
        self.asked: list[tuple[str, tuple[str, ...]]] = []

    def ask(self, question: str, *, history: Sequence[str] = ()) -> Answer:
        self.asked.append((question, tuple(history)))
        return self.engine.ask(question, history=history)


def update(update_id: int, text: str | None = QUESTION, *, chat_id: int = 42, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": update_id,
        "date": 1700000000,
        "chat": {"id": chat_id, "type": "private"},
        "from": {"id": chat_id, "is_bot": False, "first_name": "A"},
        **extra,
    }
    if text is not None:
        message["text"] = text
    return {"update_id": update_id, "message": message}


_STATES = itertools.count()


def fresh_store(settings: Settings) -> BotStore:
    """A bot state of its own for one harness (the engine's index folder is shared by a module)."""
    path = settings.index_dir.parent / "bot-states" / f"{next(_STATES)}.sqlite3"
    return BotStore(path, 123, history_ttl=3600, update_ttl=86400)


class Harness:
    def __init__(self, engine: QuestionAsker, settings: Settings, store: BotStore | None = None) -> None:
        self.transport = FakeRequest()
        self.engine = RecordingEngine(engine)
        self.store = store if store is not None else fresh_store(settings)
        self.router = telegram_router(self.engine, settings, request=self.transport, store=self.store)
        self.path = settings.telegram.path
        app = FastAPI()
        app.include_router(self.router)
        self.client = TestClient(app)

    def post(self, payload: Any, secret: str | None = SECRET) -> Any:
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        return self.client.post(self.path, json=payload, headers=headers)

    def post_raw(self, body: bytes, secret: str | None = SECRET) -> Any:
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        return self.client.post(self.path, content=body, headers=headers)


@pytest.fixture
def hook(engine: Engine, settings: Settings) -> Iterator[Harness]:
    harness = Harness(engine, settings)
    with harness.client:
        yield harness


def test_router_is_an_api_router_on_the_configured_path(hook: Harness) -> None:
    assert isinstance(hook.router, TelegramRouter)
    assert [getattr(r, "path", None) for r in hook.router.routes] == ["/telegram/webhook"]


@pytest.mark.parametrize(("secret", "status"), [(None, 401), ("wrong", 403), ("s3cret ", 403), ("", 403)])
def test_wrong_or_missing_secret_is_rejected(hook: Harness, secret: str | None, status: int) -> None:
    response = hook.post(update(1), secret=secret)
    assert response.status_code == status
    assert hook.transport.calls == []
    assert hook.engine.asked == []


def test_a_question_gets_a_cited_markdown_reply(hook: Harness) -> None:
    response = hook.post(update(1))
    assert response.status_code == 200 and response.json()["ok"] is True
    sent = hook.transport.sent()
    assert sent and all(m["chat_id"] == 42 and m["parse_mode"] == "MarkdownV2" for m in sent)
    text = "\n".join(m["text"] for m in sent)
    shown = check_markdown_v2(text)
    first = hook.engine.engine.ask(QUESTION).hits[0]
    assert f"[1] 《{first.title}》" in shown
    assert f"`{first.chunk.doc_id}:{first.chunk.start}-{first.chunk.end}`" in text
    assert hook.engine.asked == [(QUESTION, ())]


def test_a_duplicate_delivery_is_answered_once(hook: Harness) -> None:
    first = hook.post(update(7))
    again = hook.post(update(7))
    assert first.status_code == again.status_code == 200
    assert len(hook.engine.asked) == 1
    assert len(hook.transport.sent()) == len(
        format_answer(hook.engine.engine.ask(QUESTION), markdown=True, limit=4096)
    )


def test_a_follow_up_uses_the_chat_history(hook: Harness, settings: Settings) -> None:
    hook.post(update(1))
    hook.post(update(2, "其中有哪些城市?"))
    hook.post(update(3, "别的聊天", chat_id=99))
    assert hook.engine.asked == [
        (QUESTION, ()),
        ("其中有哪些城市?", (QUESTION,)),
        ("别的聊天", ()),
    ]
    for n in range(4, 10):
        hook.post(update(n, f"问题{n}"))
    kept = hook.engine.asked[-1][1]
    assert len(kept) == settings.telegram.history_turns
    assert kept[-1] == "问题8"


def test_new_command_forgets_the_history(hook: Harness) -> None:
    hook.post(update(1))
    hook.post(update(2, "/new"))
    hook.post(update(3, "其中有哪些城市?"))
    assert hook.engine.asked[-1] == ("其中有哪些城市?", ())
    assert any("新对话" in m["text"] for m in hook.transport.sent())


@pytest.mark.parametrize("command", ["/start", "/help", "/help@qa_news_bot"])
def test_start_and_help_get_usage(hook: Harness, command: str) -> None:
    assert hook.post(update(1, command)).status_code == 200
    (message,) = hook.transport.sent()
    assert message["chat_id"] == 42 and "/new" in check_markdown_v2(message["text"])
    assert hook.engine.asked == []


def test_a_command_for_another_bot_is_ignored(hook: Harness) -> None:
    hook.post(update(1, "/help@other_bot"))
    assert hook.transport.sent() == []


def test_non_text_updates_are_acknowledged_and_ignored(hook: Harness) -> None:
    sticker = {"file_id": "x", "file_unique_id": "y", "width": 1, "height": 1, "is_animated": False,
               "is_video": False, "type": "regular"}  # fmt: skip
    assert hook.post(update(1, None, sticker=sticker)).status_code == 200
    edited = {"update_id": 2, "edited_message": update(2)["message"] | {"edit_date": 1700000001}}
    assert hook.post(edited).status_code == 200
    assert hook.transport.sent() == [] and hook.engine.asked == []


def test_rejected_markdown_falls_back_to_plain_text(hook: Harness) -> None:
    hook.transport.reject_markdown = True
    hook.post(update(1))
    plain = [m for m in hook.transport.sent() if "parse_mode" not in m]
    assert plain and "[1] 《" in plain[0]["text"] + plain[-1]["text"]


def test_a_long_answer_is_sent_in_parts_under_the_limit(engine: Engine, bot_dir: Path) -> None:
    settings = _settings(bot_dir, telegram={"max_message_chars": 300})
    harness = Harness(engine, settings)
    with harness.client:
        harness.post(update(1))
    sent = harness.transport.sent()
    assert len(sent) > 1
    assert all(text_length(m["text"]) <= 300 for m in sent)
    shown = check_markdown_v2("\n".join(m["text"] for m in sent))
    assert all(f"[{n}] 《" in shown for n in range(1, 6))


def test_missing_bot_token_is_a_config_error(bot_dir: Path, engine: Engine) -> None:
    from qa.errors import ConfigError

    settings = _settings(bot_dir, telegram={"bot_token": ""})
    with pytest.raises(ConfigError, match="bot_token"):
        telegram_router(engine, settings)


def test_the_service_mounts_the_webhook(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_module = pytest.importorskip("qa.api.app")
    import qa.bot.telegram as adapter
    from qa.bot.client import make_bot

    transport = FakeRequest()
    monkeypatch.setattr(adapter, "make_bot", lambda config, request=None: make_bot(config, request=transport))
    app = app_module.create_app(settings, engine)
    with TestClient(app) as client:
        path = settings.telegram.path
        assert client.post(path, json=update(1), headers={SECRET_HEADER: "nope"}).status_code == 403
        assert transport.calls == []
        assert client.post(path, json=update(1), headers={SECRET_HEADER: SECRET}).status_code == 200
        for name in ("100k-deep array", "message is a string", "date 1e300", "not JSON"):
            response = client.post(path, content=MALFORMED[name], headers={SECRET_HEADER: SECRET})
            assert response.status_code == 200 and response.json()["ignored"] is True, name
    sent = transport.sent()
    assert sent and sent[0]["chat_id"] == 42
    assert "[1] 《" in check_markdown_v2("\n".join(m["text"] for m in sent))


# -- malformed and odd deliveries ------------------------------------------------------------------------


def _json(value: Any) -> bytes:
    """JSON as a sender might write it (NaN and Infinity included, which Python's json.loads accepts)."""
    return json.dumps(value).encode("utf-8")


def _message(**fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = update(1)["message"]
    return message | fields


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


VALID = _json(update(1))
MALFORMED: dict[str, bytes] = {
    # the outside probe's 500s
    "100k-deep array": b"[" * 100_000,
    "50k-deep object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "message is a string": _json({"update_id": 1, "message": "text"}),
    "text is a list": _json({"update_id": 1, "message": _message(text=["a"])}),
    "date 1e300": _json({"update_id": 1, "message": _message(date=1e300)}),
    "reply_to_message is a string": _json({"update_id": 1, "message": _message(reply_to_message="x")}),
    # more of the same kinds
    "deep list inside a valid update": _json(update(1, x_nested=_nested(200))),
    "text is a bool": _json({"update_id": 1, "message": _message(text=True)}),
    "text is an object": _json({"update_id": 1, "message": _message(text={"a": 1})}),
    "date Infinity": _json({"update_id": 1, "message": _message(date=float("inf"))}),
    "date NaN": _json({"update_id": 1, "message": _message(date=float("nan"))}),
    "date -1e20": _json({"update_id": 1, "message": _message(date=-1e20)}),
    "date is a string": _json({"update_id": 1, "message": _message(date="today")}),
    "chat is a string": _json({"update_id": 1, "message": _message(chat="x")}),
    "chat without id": _json({"update_id": 1, "message": _message(chat={"type": "private"})}),
    "chat id is a string": _json({"update_id": 1, "message": _message(chat={"id": "42", "type": "private"})}),
    "chat id is a float": _json({"update_id": 1, "message": _message(chat={"id": 42.0, "type": "private"})}),
    "chat id over 64 bits": _json(
        {"update_id": 1, "message": _message(chat={"id": 2**70, "type": "private"})}
    ),
    "text message without chat": _json(
        {"update_id": 1, "message": {k: v for k, v in _message().items() if k != "chat"}}
    ),
    "from is a string": _json({"update_id": 1, "message": _message(**{"from": "x"})}),
    "entity without offsets": _json({"update_id": 1, "message": _message(entities=[{"type": "bold"}])}),
    "entities is a string": _json({"update_id": 1, "message": _message(entities="x")}),
    "callback_query is a number": _json({"update_id": 1, "callback_query": 5}),
    "edited_message is a list": _json({"update_id": 1, "edited_message": [1]}),
    "update_id missing": _json({"message": _message()}),
    "update_id is a string": _json({"update_id": "1", "message": _message()}),
    "update_id is a list": _json({"update_id": [1], "message": _message()}),
    "update_id is a bool": _json({"update_id": True, "message": _message()}),
    "update_id is a float": _json({"update_id": 1.5, "message": _message()}),
    # not JSON objects at all
    "not JSON": b"not json",
    "empty body": b"",
    "truncated JSON": VALID[:-3],
    "not UTF-8": VALID[:-2] + b',"x":"\xff\xfe"}}',
    "integer over the digit limit": b'{"update_id": ' + b"1" * 5000 + b"}",
    "a JSON array": b"[1, 2]",
    "a JSON string": b'"update"',
    "JSON null": b"null",
    "a JSON number": b"42",
}


@pytest.mark.parametrize("body", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_update_is_acknowledged_and_logged_once(
    hook: Harness, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        response = hook.post_raw(body)
    assert response.status_code == 200, response.text  # Telegram stops retrying
    assert response.json()["ok"] is True and response.json()["ignored"] is True
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.name == "qa.bot.telegram" and record.levelno == logging.WARNING
    logged = record.getMessage()
    assert "malformed" in logged and len(logged) < 400 and "\n" not in logged  # the reason, not the body
    assert len(body) < 30 or body.decode("utf-8", "replace") not in logged
    assert hook.transport.calls == [] and hook.engine.asked == []


@pytest.mark.parametrize("body", [MALFORMED["100k-deep array"], MALFORMED["message is a string"], VALID])
@pytest.mark.parametrize(("secret", "status"), [(None, 401), ("wrong", 403)])
def test_a_wrong_secret_is_rejected_whatever_the_body(
    hook: Harness, body: bytes, secret: str | None, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert hook.post_raw(body, secret=secret).status_code == status
    assert hook.transport.calls == [] and hook.engine.asked == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


CHANNEL_POST = {
    "message_id": 5,
    "date": 1700000000,
    "chat": {"id": -1001, "type": "channel"},
    "text": QUESTION,
}
CALLBACK = {
    "id": "1",
    "from": {"id": 42, "is_bot": False, "first_name": "A"},
    "chat_instance": "c",
    "data": "x",
}
ODD_BUT_VALID: dict[str, dict[str, Any]] = {
    "edited_message only": {"update_id": 1, "edited_message": _message(edit_date=1700000001)},
    "channel_post": {"update_id": 1, "channel_post": CHANNEL_POST},
    "edited_channel_post": {"update_id": 1, "edited_channel_post": CHANNEL_POST | {"edit_date": 1700000001}},
    "callback_query": {"update_id": 1, "callback_query": CALLBACK},
    "message null": {"update_id": 1, "message": None},
    "only an update_id": {"update_id": 1},
    "an update kind from a later Bot API": {"update_id": 1, "future_kind": {"x": [1, {"y": None}]}},
    "empty text": update(1, ""),
    "service message without text": update(1, None, new_chat_title="新群名"),
}


@pytest.mark.parametrize("payload", list(ODD_BUT_VALID.values()), ids=list(ODD_BUT_VALID))
def test_an_odd_but_valid_update_is_ignored_quietly(
    hook: Harness, payload: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        response = hook.post(payload)
    assert response.status_code == 200 and response.json() == {"ok": True, "ignored": True}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert hook.transport.calls == [] and hook.engine.asked == []


@pytest.mark.parametrize(
    "text",
    [
        QUESTION + "[{" * 300,  # brackets inside a string do not count towards the depth
        QUESTION + '\\"[[[' * 100 + '"',  # nor do they after an escaped quote
        QUESTION + "\\" * 7,
    ],
)
def test_brackets_and_quotes_in_the_text_are_answered(hook: Harness, text: str) -> None:
    assert hook.post(update(1, text)).json() == {"ok": True}
    assert hook.engine.asked == [(text.strip(), ())]
    assert hook.transport.sent()


def test_the_nesting_bound_is_inclusive(hook: Harness) -> None:
    deepest = update(1, x_nested=_nested(MAX_JSON_DEPTH - 2))  # update, message, then the lists
    assert _depth(deepest) == MAX_JSON_DEPTH
    assert hook.post(deepest).json() == {"ok": True}
    too_deep = update(2, x_nested=_nested(MAX_JSON_DEPTH - 1))
    assert hook.post(too_deep).json()["ignored"] is True
    assert [question for question, _ in hook.engine.asked] == [QUESTION]


def test_a_reply_chain_is_answered(hook: Harness) -> None:
    inner = update(1, "earlier")["message"]
    for n in range(10):
        inner = update(n + 2, f"reply {n}", reply_to_message=inner)["message"]
    assert hook.post({"update_id": 99, "message": inner}).json() == {"ok": True}
    assert hook.engine.asked == [("reply 9", ())]


def test_parse_update_reads_only_what_the_webhook_uses() -> None:
    incoming = parse_update(VALID)
    assert (incoming.update_id, incoming.chat_id, incoming.text) == (1, 42, QUESTION)
    assert parse_update(_json({"update_id": 3})).chat_id is None
    with pytest.raises(MalformedUpdate, match="nested"):
        parse_update(MALFORMED["50k-deep object"])


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_limit_is_acknowledged_not_processed(
    engine: Engine, bot_dir: Path, caplog: pytest.LogCaptureFixture, chunked: bool
) -> None:
    settings = _settings(bot_dir, server={"max_body_bytes": 2048})
    harness = Harness(engine, settings)
    big = _json(update(1, "问" * 1000))  # 3 bytes a character in UTF-8
    assert len(big) > 2048
    content: Any = iter([big[i : i + 512] for i in range(0, len(big), 512)]) if chunked else big
    headers = {SECRET_HEADER: SECRET}
    with harness.client, caplog.at_level(logging.WARNING):
        refused = harness.client.post(harness.path, content=b"[" * 5000, headers={SECRET_HEADER: "x"})
        response = harness.client.post(harness.path, content=content, headers=headers)
        small = harness.post(update(2))
    assert refused.status_code == 403
    assert response.status_code == 200 and response.json()["ignored"] is True
    assert "2048" in response.json()["reason"]
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "max_body_bytes" in record.getMessage()
    assert small.status_code == 200 and harness.engine.asked == [(QUESTION, ())]


class FailingEngine:
    def ask(self, question: str, *, history: Sequence[str] = ()) -> Answer:
        raise RuntimeError("the index went away")


@pytest.mark.parametrize("sends_fail", [False, True])
def test_a_failing_answer_is_logged_and_never_raised(
    settings: Settings, caplog: pytest.LogCaptureFixture, sends_fail: bool
) -> None:
    harness = Harness(FailingEngine(), settings)
    harness.transport.fail_sends = sends_fail
    with harness.client, caplog.at_level(logging.WARNING):
        answered = harness.post(update(1))  # the TestClient re-raises what a background task raises
        command = harness.post(update(2, "/help"))
    assert answered.status_code == command.status_code == 200
    assert any("could not answer chat 42" in r.getMessage() for r in caplog.records)
    if not sends_fail:
        assert harness.transport.sent()[0]["text"].startswith("抱歉")


# -- property tests: random bodies, mutations of a valid update, valid variants --------------------------

FIELD_NAMES = ["update_id", "message", "edited_message", "channel_post", "message_id", "date", "chat",
               "id", "type", "text", "from", "reply_to_message", "entities", "offset", "length", "user",
               "is_bot", "first_name", "photo", "sticker", "callback_query", "caption"]  # fmt: skip
TRICKY_CHARS = st.sampled_from('[]{}"\\:, \n/') | st.characters()
JSON_KEYS = st.sampled_from(FIELD_NAMES) | st.text(TRICKY_CHARS, max_size=6)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(TRICKY_CHARS, max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_KEYS, inner, max_size=4),
    max_leaves=12,
)
FUZZ = hypothesis.settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path (keys and indexes) of every member inside ``value``, at any depth."""
    members = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    paths = []
    for key, member in members:
        paths.append((*prefix, key))
        paths.extend(_paths(member, (*prefix, key)))
    return paths


def _edited(value: Any, path: Sequence[Any], edit: Any) -> Any:
    """A copy of ``value`` with ``edit(container, key)`` applied where ``path`` leads."""
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    head, *rest = path
    if rest:
        copy[head] = _edited(copy[head], rest, edit)
    else:
        edit(copy, head)
    return copy


def _mutate(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with one member, anywhere inside, replaced, deleted, re-typed or given a new key."""
    path = draw(st.sampled_from(_paths(value)))
    action = draw(st.sampled_from(["replace", "delete", "wrap", "stringify", "add"]))
    new_value, new_key = draw(JSON_VALUES), draw(JSON_KEYS)

    def edit(container: Any, key: Any) -> None:
        if action == "delete":
            del container[key]
        elif action == "wrap":
            container[key] = [container[key]]
        elif action == "stringify":
            container[key] = json.dumps(container[key])
        elif action == "add" and isinstance(container[key], dict):
            container[key] = container[key] | {new_key: new_value}
        else:
            container[key] = new_value

    return _edited(value, path, edit)


@st.composite
def mutated_updates(draw: st.DrawFn) -> Any:
    text = draw(st.sampled_from([QUESTION, "/help", "/new", "/help@other_bot"]))
    value: Any = update(draw(st.integers(1, 10**6)), text, reply_to_message=update(0, "earlier")["message"])
    for _ in range(draw(st.integers(1, 4))):
        value = _mutate(draw, value)
    return value


class CannedEngine:
    """An engine that answers every question with the same cited answer, instantly."""

    def __init__(self) -> None:
        self.reply = _answer(_hit(1, "胡志明市与中国多个地方保持友好合作关系。"), _hit(2, "短段落。"))

    def ask(self, question: str, *, history: Sequence[str] = ()) -> Answer:
        return self.reply


def _assert_answers(harness: Harness, update_id: int, text: str, chat_id: int) -> None:
    before = len(harness.transport.sent())
    response = harness.post_raw(_json(update(update_id, text, chat_id=chat_id)))
    assert response.status_code == 200 and response.json() == {"ok": True}, response.text
    assert harness.engine.asked[-1][0] == text.strip()
    new = harness.transport.sent()[before:]
    assert new and all(m["chat_id"] == chat_id for m in new)


def _serious(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_random_bodies_never_fail_the_webhook(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    harness = Harness(CannedEngine(), settings)
    fresh_ids = itertools.count(2**62)
    bodies = st.one_of(JSON_VALUES.map(_json), st.binary(max_size=64), mutated_updates().map(_json))
    with harness.client, caplog.at_level(logging.WARNING):

        @FUZZ
        @given(body=bodies)
        def check(body: bytes) -> None:
            caplog.clear()
            before = len(harness.transport.sent())
            response = harness.post_raw(body)
            assert response.status_code == 200, response.text
            assert response.json()["ok"] is True
            serious = _serious(caplog)
            assert len(serious) <= 1 and all(r.levelno == logging.WARNING for r in serious)
            assert all("\n" not in r.getMessage() and len(r.getMessage()) < 400 for r in serious)
            assert bool(serious) == bool(response.json().get("reason"))
            if response.json() == {"ok": True}:  # accepted: answered unless a command for another bot
                incoming = parse_update(body)
                new = harness.transport.sent()[before:]
                command = incoming.text.split()[0]
                assert (command.startswith("/") and "@" in command) or new
                assert all(m["chat_id"] == incoming.chat_id for m in new)
            _assert_answers(harness, next(fresh_ids), "还在吗?", chat_id=7)  # the webhook still works

        check()


def test_valid_variants_of_an_update_are_answered(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    harness = Harness(CannedEngine(), settings)
    update_ids = itertools.count(1)
    extra_keys = st.text(TRICKY_CHARS, max_size=6).map(lambda key: "x_" + key)  # fields PTB does not know
    extras = st.dictionaries(extra_keys, JSON_VALUES.filter(lambda v: _depth(v) < 50), max_size=3)
    texts = st.text(TRICKY_CHARS, min_size=1, max_size=40).filter(
        lambda t: bool(t.strip()) and not t.strip().startswith("/")
    )
    with harness.client, caplog.at_level(logging.WARNING):

        @FUZZ
        @given(text=texts, chat_id=st.integers(-(2**63), 2**63 - 1), extra=extras)
        def check(text: str, chat_id: int, extra: dict[str, Any]) -> None:
            caplog.clear()
            payload = update(next(update_ids), text, chat_id=chat_id, **extra)
            payload["message"]["chat"] |= extra
            payload |= extra
            before = len(harness.transport.sent())
            response = harness.post_raw(_json(payload))
            assert response.status_code == 200 and response.json() == {"ok": True}, response.text
            assert harness.engine.asked[-1][0] == text.strip()
            new = harness.transport.sent()[before:]
            assert new and all(m["chat_id"] == chat_id for m in new)
            assert not _serious(caplog)

        check()


@hypothesis.settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(value=JSON_VALUES, limit=st.integers(0, 6), ascii_only=st.booleans())
def test_the_depth_scan_agrees_with_the_parsed_depth(value: Any, limit: int, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert json_depth_exceeds(text, limit) == (_depth(value) > limit)
