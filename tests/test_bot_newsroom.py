"""The bot in a newsroom: groups, the allowlist, threaded replies, links, /sources, flood control, two
workers sharing one state, and python-telegram-bot missing.

Every update is a real :class:`telegram.Update` (serialised with ``to_dict()``, as Telegram would send
it); the Bot API is :class:`tests.test_bot.FakeRequest`, no network.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from telegram import Chat, Message, MessageEntity, Update, User

from qa.bot import format_answer
from qa.bot.format import follow_up_note, link_target
from qa.bot.store import BotStore
from qa.config import Settings
from qa.records import Answer, Chunk, Hit, Section
from tests.test_bot import (
    SECRET,
    SECRET_HEADER,
    Harness,
    _settings,
    check_markdown_v2,
    fresh_store,
)

BOT = User(123, "QA", is_bot=True, username="qa_news_bot")  # what FakeRequest's getMe answers
ALICE = User(7, "Alice", is_bot=False)
PRIVATE = Chat(7, Chat.PRIVATE)
NEWSROOM = Chat(-100200300, Chat.SUPERGROUP, title="Newsroom")
URL = "https://zh.vietnamplus.vn/news_(1).html"
LONG = "胡志明市与中国的多个地方保持友好合作关系，" * 30  # longer than one message of 300


def tg_update(
    update_id: int,
    text: str,
    *,
    chat: Chat = PRIVATE,
    entities: Sequence[MessageEntity] = (),
    reply_to: Message | None = None,
    thread: int | None = None,
) -> Update:
    message = Message(
        message_id=update_id * 10,
        date=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        chat=chat,
        from_user=ALICE,
        text=text,
        entities=tuple(entities),
        reply_to_message=reply_to,
        message_thread_id=thread,
        is_topic_message=True if thread is not None else None,
    )
    return Update(update_id, message=message)


def bot_message(message_id: int, chat: Chat = NEWSROOM) -> Message:
    return Message(message_id, datetime(2026, 1, 2, tzinfo=UTC), chat, from_user=BOT, text="[1] 《…》")


class Canned:
    """An engine that answers every question with two cited passages (the first with a link)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, tuple[str, ...]]] = []
        first = Chunk("doc1", Section.BODY, 10, 10 + len(LONG), LONG)
        second = Chunk("doc2", Section.RELATED, 0, 4, "短段落。", "另一篇")
        self.hits = (
            Hit(first, 1.0, "胡志明市与中国", "2024-05-06", url=URL),
            Hit(second, 0.5, "越中合作", None),
        )

    def ask(self, question: str, *, history: Sequence[str] = ()) -> Answer:
        self.asked.append((question, tuple(history)))
        return Answer(question, True, self.hits, text="胡志明市与中国的多个地方 [1]\n短段落 [2]")


class Room:
    """A harness posting real PTB updates."""

    def __init__(self, settings: Settings, store: BotStore | None = None) -> None:
        self.canned = Canned()
        self.harness = Harness(self.canned, settings, store)
        self.transport = self.harness.transport

    def post(self, update: Update) -> dict[str, Any]:
        response = self.harness.client.post(
            self.harness.path, json=update.to_dict(), headers={SECRET_HEADER: SECRET}
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def sent(self) -> list[dict[str, Any]]:
        return self.transport.sent()

    def shown(self) -> str:
        return "\n".join(
            check_markdown_v2(m["text"]) if m.get("parse_mode") else m["text"] for m in self.sent()
        )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return _settings(tmp_path, telegram={"max_message_chars": 300})


@pytest.fixture
def room(settings: Settings) -> Iterator[Room]:
    room = Room(settings)
    with room.harness.client:
        yield room


# -- groups ----------------------------------------------------------------------------------------------


def test_group_chatter_is_ignored(room: Room) -> None:
    room.post(tg_update(1, "今天开会吗?", chat=NEWSROOM))
    room.post(tg_update(2, "回复同事", chat=NEWSROOM, reply_to=tg_update(1, "x", chat=NEWSROOM).message))
    room.post(tg_update(3, "/help@other_bot", chat=NEWSROOM))
    room.post(tg_update(4, "/ask@other_bot 问题", chat=NEWSROOM))
    room.post(tg_update(5, "/poll 午饭吃什么", chat=NEWSROOM))  # a command of another bot in the group
    assert room.canned.asked == [] and room.sent() == []
    room.post(tg_update(6, "/poll@qa_news_bot", chat=NEWSROOM))  # named: the usage says what it knows
    room.post(tg_update(7, "/poll"))  # in a private chat too
    assert [m["text"].startswith("*新闻问答") for m in room.sent()] == [True, True]


def test_ask_in_a_group_is_answered_threaded_to_the_question(room: Room) -> None:
    room.post(tg_update(1, "/ask 胡志明市与中国多少个地方保持友好合作关系?", chat=NEWSROOM))
    room.post(tg_update(2, "/ask@qa_news_bot 其中有哪些城市?", chat=NEWSROOM))
    assert room.canned.asked == [
        ("胡志明市与中国多少个地方保持友好合作关系?", ()),
        ("其中有哪些城市?", ("胡志明市与中国多少个地方保持友好合作关系?",)),
    ]
    sent = room.sent()
    assert sent and all(m["chat_id"] == NEWSROOM.id for m in sent)
    assert {m["reply_parameters"]["message_id"] for m in sent} == {10, 20}  # each part threaded
    assert all(m["reply_parameters"]["allow_sending_without_reply"] for m in sent)


def test_a_mention_is_a_question_without_the_mention(room: Room) -> None:
    text = "@QA_news_bot 胡志明市与中国多少个地方?"
    room.post(tg_update(1, text, chat=NEWSROOM, entities=[MessageEntity("mention", 0, 12)]))
    emoji = "😀 请问 @qa_news_bot 越中贸易额是多少?"  # the emoji is 2 UTF-16 units: offsets count them
    room.post(tg_update(2, emoji, chat=NEWSROOM, entities=[MessageEntity("mention", 6, 12)]))
    named = "QA 越中合作?"  # a text_mention: the bot named without its @username
    room.post(tg_update(3, named, chat=NEWSROOM, entities=[MessageEntity("text_mention", 0, 2, user=BOT)]))
    other = "@someone_else 你看这个"
    room.post(tg_update(4, other, chat=NEWSROOM, entities=[MessageEntity("mention", 0, 13)]))
    assert [q for q, _ in room.canned.asked] == [
        "胡志明市与中国多少个地方?",
        "😀 请问 越中贸易额是多少?",
        "越中合作?",
    ]


def test_a_reply_to_the_bot_is_a_question(room: Room) -> None:
    room.post(tg_update(1, "那广州呢?", chat=NEWSROOM, reply_to=bot_message(5)))
    assert room.canned.asked == [("那广州呢?", ())]
    assert room.sent()[0]["reply_parameters"]["message_id"] == 10


def test_a_bare_mention_or_ask_gets_a_hint(room: Room) -> None:
    room.post(tg_update(1, "/ask", chat=NEWSROOM))
    room.post(tg_update(2, "@qa_news_bot", chat=NEWSROOM, entities=[MessageEntity("mention", 0, 12)]))
    assert room.canned.asked == []
    assert [m["text"].startswith("请在 /ask 后写上问题") for m in room.sent()] == [True, True]


def test_a_forum_topic_is_answered_in_its_topic(room: Room) -> None:
    room.post(tg_update(1, "/ask 越中合作?", chat=NEWSROOM, thread=77))
    assert room.sent() and all(m["message_thread_id"] == 77 for m in room.sent())
    actions = [p for e, p in room.transport.calls if e == "sendChatAction"]
    assert actions and actions[0]["message_thread_id"] == 77


def test_in_a_private_chat_every_message_is_a_question(room: Room) -> None:
    room.post(tg_update(1, "越中合作?"))
    first = len(room.sent())
    room.post(tg_update(2, "/ask 还有呢?"))
    assert room.canned.asked == [("越中合作?", ()), ("还有呢?", ("越中合作?",))]
    assert not any("earlier question" in m["text"] for m in room.sent()[:first])  # a first question
    assert room.shown().endswith(follow_up_note(1))  # a follow-up says it used the chat's history


# -- the allowlist ---------------------------------------------------------------------------------------


def test_only_allowed_chats_are_answered(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = _settings(tmp_path, telegram={"allowed_chats": [NEWSROOM.id]})
    room = Room(settings)
    with room.harness.client, caplog.at_level(logging.INFO):
        room.post(tg_update(1, "/ask 越中合作?", chat=NEWSROOM))
        allowed = len(room.sent())
        room.post(tg_update(2, "越中合作?"))  # a private chat that is not listed
        room.post(tg_update(3, "闲聊", chat=Chat(-5, Chat.GROUP)))  # not addressed: not even refused
        room.post(tg_update(4, "/ask 越中合作?", chat=Chat(-5, Chat.GROUP)))
    assert room.canned.asked == [("越中合作?", ())]
    refusals = room.sent()[allowed:]
    assert [m["chat_id"] for m in refusals] == [7, -5]
    assert all("allowed chats" in check_markdown_v2(m["text"]) for m in refusals)
    assert "chat id \\-5" in refusals[1]["text"]  # what the admin adds to telegram.allowed_chats
    assert any("not in telegram.allowed_chats" in r.getMessage() for r in caplog.records)


def test_allowed_chats_is_validated(tmp_path: Path) -> None:
    from qa.errors import ConfigError

    with pytest.raises(ConfigError, match="allowed_chats"):
        _settings(tmp_path, telegram={"allowed_chats": [2**64]})
    with pytest.raises(ConfigError, match="bot_token"):
        _settings(tmp_path, telegram={"bot_token": "not a token"})


# -- citations, links and /sources -----------------------------------------------------------------------


def test_citations_carry_title_date_and_link(room: Room) -> None:
    room.post(tg_update(1, "越中合作?"))
    links: list[str] = []
    shown = "\n".join(check_markdown_v2(m["text"], links) for m in room.sent())
    assert links == [URL]  # the first passage's title links to its article; the second has no link
    assert "[1] 《胡志明市与中国》 2024-05-06" in shown and "[2] 《越中合作》 相关新闻" in shown
    plain = format_answer(Answer("q", True, room.canned.hits, "a [1]"), markdown=False, limit=4096)[0]
    assert f"doc1:10-{10 + len(LONG)} · {URL}" in plain


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "ftp://x/y", "https://", "https://a b/c", "https://x/\n", "", None, "x" * 3000],
)
def test_only_http_links_are_linked(url: str | None) -> None:
    assert link_target(url) is None
    assert link_target("http://example.com/a?b=(c)") == "http://example.com/a?b=(c)"


def test_sources_gives_the_whole_passage_of_the_last_answer(room: Room) -> None:
    room.post(tg_update(1, "/sources 1"))
    assert room.sent()[-1]["text"].startswith("还没有可查看的出处")
    room.post(tg_update(2, "越中合作?"))
    answered = room.shown()
    assert LONG not in answered.replace("\n", "")  # the reply cut the long passage with "…"
    before = len(room.sent())
    room.post(tg_update(3, "/sources 1"))
    parts = room.sent()[before:]
    assert len(parts) > 1 and all(len(m["text"]) <= 300 for m in parts)
    assert all(m["reply_parameters"]["message_id"] == 30 for m in parts)
    shown = [check_markdown_v2(m["text"]) for m in parts]
    assert shown[0].startswith("[1] 《胡志明市与中国》")
    assert "".join(
        line.removeprefix(">") for s in shown for line in s.splitlines()[s.startswith("[1]") :]
    ) == (LONG.strip())
    before = len(room.sent())
    room.post(tg_update(4, "/sources"))  # the list of citations
    listing = check_markdown_v2(room.sent()[before]["text"])
    assert listing.splitlines()[0].startswith("[1] 《") and listing.splitlines()[1].startswith("[2] 《")
    for n, argument in enumerate(["9", "0", "abc", "-1"], start=5):
        room.post(tg_update(n, f"/sources {argument}"))
        assert "/sources 1 到 /sources 2" in check_markdown_v2(room.sent()[-1]["text"])
    room.post(tg_update(10, "/sources [2]"))
    assert "短段落。" in check_markdown_v2(room.sent()[-1]["text"])
    room.post(tg_update(11, "/new"))
    room.post(tg_update(12, "/sources 1"))
    assert room.sent()[-1]["text"].startswith("还没有可查看的出处")


def test_sources_after_an_abstention_says_so(settings: Settings) -> None:
    room = Room(settings)
    room.canned.hits = ()
    with room.harness.client:
        room.post(tg_update(1, "特朗普在哪里演讲?"))
        room.post(tg_update(2, "/sources 1"))
    assert room.sent()[-1]["text"].startswith("上一个回答没有引用任何段落")


def test_help_lists_every_command(room: Room) -> None:
    room.post(tg_update(1, "/help"))
    shown = check_markdown_v2(room.sent()[0]["text"])
    for command in ("/ask", "/sources", "/new", "/help"):
        assert command in shown


def test_a_library_error_is_told_without_detail(settings: Settings) -> None:
    from qa.errors import IndexStoreError

    room = Room(settings)

    def fail(question: str, *, history: Sequence[str] = ()) -> Answer:
        raise IndexStoreError("/srv/secret/index/CURRENT is missing")

    room.canned.ask = fail  # type: ignore[method-assign]
    with room.harness.client:
        room.post(tg_update(1, "越中合作?"))
    (message,) = room.sent()
    assert message["text"].startswith("抱歉，出错了") and "the index is not available" in message["text"]
    assert "/srv" not in message["text"]  # the operator's detail stays in the log


# -- flood control ---------------------------------------------------------------------------------------


def test_flood_control_is_waited_out_by_the_rate_limiter(room: Room) -> None:
    room.transport.flood = 1  # the first sendMessage gets 429, retry after 1 s
    room.post(tg_update(1, "/help"))
    sends = [p for e, p in room.transport.calls if e == "sendMessage"]
    assert len(sends) == 2 and sends[0] == sends[1]  # the same message once more, after the wait
    assert len(room.sent()) == 2 and room.canned.asked == []


def test_a_flood_longer_than_the_retries_gives_up_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    room = Room(_settings(tmp_path, telegram={"flood_retries": 0}))
    room.transport.flood = 5
    with room.harness.client, caplog.at_level(logging.WARNING):
        assert room.post(tg_update(1, "/help")) == {"ok": True}
    assert any("could not answer chat 7" in r.getMessage() for r in caplog.records)


# -- two workers, one state ------------------------------------------------------------------------------


def test_two_workers_share_history_and_claims(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "shared" / "telegram.sqlite3"
    store = lambda: BotStore(path, 123, history_ttl=3600, update_ttl=86400)  # noqa: E731
    first, second = Room(settings, store()), Room(settings, store())  # two processes' own connections
    with first.harness.client, second.harness.client:
        first.post(tg_update(1, "胡志明市与中国多少个地方保持友好合作关系?"))
        second.post(tg_update(2, "其中有哪些城市?"))
        retried = tg_update(3, "那广州呢?")
        assert first.post(retried) == {"ok": True}
        assert second.post(retried) == {"ok": True, "duplicate": True}
        second.post(tg_update(4, "/sources 2"))
    assert first.canned.asked == [
        ("胡志明市与中国多少个地方保持友好合作关系?", ()),
        ("那广州呢?", ("胡志明市与中国多少个地方保持友好合作关系?", "其中有哪些城市?")),
    ]
    assert second.canned.asked == [("其中有哪些城市?", ("胡志明市与中国多少个地方保持友好合作关系?",))]
    assert "短段落。" in check_markdown_v2(second.sent()[-1]["text"])  # the other worker's last answer
    assert check_markdown_v2(second.sent()[-2]["text"]).endswith(follow_up_note(1))


def test_an_unavailable_state_asks_telegram_to_deliver_again(settings: Settings) -> None:
    store = fresh_store(settings)
    room = Room(settings, store)
    with room.harness.client:
        store.close()
        response = room.harness.client.post(
            room.harness.path, json=tg_update(1, "越中合作?").to_dict(), headers={SECRET_HEADER: SECRET}
        )
    assert response.status_code == 503 and room.canned.asked == []


# -- python-telegram-bot missing -------------------------------------------------------------------------


def test_a_missing_package_is_a_typed_error(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from qa.api.app import create_app
    from qa.bot.ptb import require_telegram
    from qa.errors import ConfigError, TelegramUnavailableError

    monkeypatch.setitem(sys.modules, "telegram", None)
    with pytest.raises(TelegramUnavailableError, match=r"zh-news-qa\[telegram\]"):
        require_telegram()
    with pytest.raises(TelegramUnavailableError, match=r"telegram\.enabled"):
        create_app(settings, Canned())  # type: ignore[arg-type]
    assert issubclass(TelegramUnavailableError, ConfigError)  # the CLI exits 2 with the message
    monkeypatch.setitem(sys.modules, "telegram.helpers", None)
    answer = Answer("q", True, Canned().hits, "a [1]")
    assert format_answer(answer, markdown=False, limit=4096)  # plain text needs nothing
    with pytest.raises(TelegramUnavailableError, match="MarkdownV2"):
        format_answer(answer, markdown=True, limit=4096)


def test_the_service_and_plain_answers_need_no_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qa.api.app import create_app

    monkeypatch.setitem(sys.modules, "telegram", None)
    settings = _settings(tmp_path, telegram={"enabled": False})
    assert create_app(settings, Canned())  # type: ignore[arg-type]
    assert format_answer(Answer("q", True, Canned().hits, "a [1]"), markdown=False, limit=4096)


def test_a_missing_rate_limiter_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from qa.bot.ptb import require_telegram
    from qa.errors import TelegramUnavailableError

    monkeypatch.setitem(sys.modules, "aiolimiter", None)
    with pytest.raises(TelegramUnavailableError, match="aiolimiter"):
        require_telegram()


def test_the_client_is_an_extbot_with_the_rate_limiter(settings: Settings) -> None:
    from telegram.ext import AIORateLimiter, ExtBot

    from qa.bot.client import make_bot

    bot = make_bot(settings.telegram)
    assert isinstance(bot, ExtBot) and isinstance(bot.rate_limiter, AIORateLimiter)
    assert bot.base_url == "https://api.telegram.org/bot123:ABC"
