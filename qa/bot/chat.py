"""What the bot answers, and how: the same for the webhook and for polling.

:class:`ChatBot` takes one :class:`qa.bot.updates.IncomingUpdate` (already claimed once in the shared
store) and decides:

* **Who.** With ``telegram.allowed_chats`` set, only those chats are answered; anyone else who addresses
  the bot is told it is private (with their chat id, for the admin to add) and nothing is asked.
* **What, in a private chat**: every message is a question; commands are ``/ask``, ``/new``,
  ``/sources [N]``, ``/help`` (``/start``).
* **What, in a group**: only ``/ask question``, a message that mentions the bot (``@bot question``, the
  mention is left out of the question) or a reply to one of the bot's messages; other chatter is ignored.
  A command addressed to another bot (``/help@other_bot``) is ignored everywhere, and so is, in a
  group, a command this bot does not know unless it names the bot (``/foo@bot`` gets the usage).
* **How.** Every reply is threaded to the message it answers (and sent in its forum topic). A question
  is asked with the chat's earlier questions (shared :class:`qa.bot.store.BotStore`, so a follow-up on
  another worker has the same context); the answer's cited passages are kept for ``/sources N``.
  Replies are MarkdownV2 (PTB's escaping), split by the citation-aware splitter; when Telegram rejects
  the markup the plain-text parts are sent instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anyio.to_thread
from telegram import Message, ReplyParameters
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import ExtBot

from qa.bot.format import BotReply, QuestionAsker, ask, format_passage, format_sources
from qa.bot.ptb import escape
from qa.bot.store import BotStore
from qa.bot.updates import IncomingUpdate
from qa.config import TelegramSettings
from qa.errors import LIBRARY_ERRORS, public_message

__all__ = ["ChatBot", "Request", "classify"]

log = logging.getLogger(__name__)

USAGE = "*新闻问答 News Q&A*\n" + escape(
    "直接发送一个关于新闻的问题，我会回答并给出带编号的出处（标题、日期、链接、原文位置）。"
    "接着追问时会参考本对话中之前的问题。在群组里，用 /ask 提问、@我，或回复我的消息。\n"
    "Send a question about the news; the answer comes with numbered citations "
    "(title, date, link, doc_id:start-end). Follow-up questions use the chat's earlier questions. "
    "In a group: /ask your question, mention me, or reply to one of my messages.\n\n"
    "/ask 问题 — 提问 ask a question\n"
    "/sources N — 上一个回答的第 N 段原文 the full passage [N] of the last answer\n"
    "/new — 开始新对话 start a new conversation\n"
    "/help — 帮助 this help"
)
NEW_CONVERSATION = escape("好的，已开始新对话。 OK, new conversation.")
FAILURE = escape("抱歉，出错了，请稍后再试。 Sorry, something went wrong; please try again later.")
ASK_WHAT = escape("请在 /ask 后写上问题，例如：/ask 胡志明市与中国多少个地方保持友好合作关系？ "
                  "Write the question after /ask.")  # fmt: skip
NO_SOURCES = escape("还没有可查看的出处：先提一个问题。 No sources yet: ask a question first.")
NO_CITATIONS = escape("上一个回答没有引用任何段落。 The last answer cited no passage.")

_Parts = Callable[[], Sequence[str]]  # the plain-text parts, made only when the markup is rejected


def _not_allowed(chat_id: int) -> str:
    return escape(
        f"抱歉，这个机器人只在获准的聊天中回答。 Sorry, this bot answers only in allowed chats. "
        f"(chat id {chat_id})"
    )


def _sources_range(count: int) -> str:
    return escape(f"请用 /sources 1 到 /sources {count}。 Use /sources 1 to /sources {count}.")


@dataclass(frozen=True, slots=True)
class Request:
    """What a message asks of the bot: a question, a command (with its argument) or nothing."""

    kind: Literal["question", "command", "ignore"]
    text: str = ""  # the question, or the command's argument
    command: str = ""  # lower-case, without "/" and "@bot"


IGNORE = Request("ignore")
COMMANDS = frozenset({"ask", "sources", "new", "reset", "help", "start"})


def classify(message: IncomingUpdate, username: str, bot_user_id: int) -> Request:
    """What ``message`` asks of the bot ``@username`` (see the module's rules for groups)."""
    text = message.text.strip()
    if text.startswith("/"):
        head, *rest = text.split(maxsplit=1)
        argument = rest[0] if rest else ""
        name, _, addressee = head[1:].partition("@")
        if addressee and addressee.lower() != username.lower():
            return IGNORE  # a command for another bot
        name = name.lower()
        if name == "ask":
            return Request("question", argument.strip())
        if name not in COMMANDS and message.in_group and not addressee:
            return IGNORE  # "/poll" in a group of several bots is most likely for another one
        return Request("command", argument.strip(), name)
    mentions = [
        e
        for e in message.entities
        if (e.kind == "mention" and message.text[e.start : e.end].lower() == f"@{username.lower()}")
        or (e.kind == "text_mention" and e.user_id == bot_user_id)
    ]
    if mentions:
        kept, at = [], 0
        for entity in sorted(mentions, key=lambda e: e.start):
            kept.append(message.text[at : entity.start])
            at = entity.end
        kept.append(message.text[at:])
        return Request("question", " ".join("".join(kept).split()))
    if not message.in_group or message.reply_to_user_id == bot_user_id:
        return Request("question", text)
    return IGNORE


class ChatBot:
    """Answers one chat message at a time; shared state lives in ``store``, never in this object."""

    def __init__(
        self, engine: QuestionAsker, config: TelegramSettings, bot: ExtBot[Any], store: BotStore
    ) -> None:
        self.engine = engine
        self.config = config
        self.bot = bot
        self.store = store
        self.allowed = frozenset(config.allowed_chats)
        self._init_lock: asyncio.Lock | None = None

    async def claim(self, update_id: int) -> bool:
        """Whether this is the first delivery of ``update_id`` on any worker (raises BotStateError)."""
        return await anyio.to_thread.run_sync(self.store.claim, update_id)

    async def handle(self, message: IncomingUpdate) -> None:
        """Answer one text message, if it asks anything of the bot. Never raises: failures are logged
        (and, once the message is known to be for the bot, told to the chat)."""
        if message.chat_id is None:
            return
        chat = message.chat_id
        try:
            await self._ready()
            request = classify(message, self.bot.username, self.bot.id)
        except Exception:
            log.exception("telegram: could not read a message of chat %s", chat)
            return
        if request.kind == "ignore":
            return
        try:
            if self.allowed and chat not in self.allowed:
                log.info("telegram: chat %s is not in telegram.allowed_chats; not answered", chat)
                await self.send(message, _not_allowed(chat))
            elif request.kind == "question":
                await self.answer(message, request.text)
            else:
                await self.command(message, request)
        except Exception as exc:
            log.exception("telegram: could not answer chat %s", chat)
            why = f"（{public_message(exc)}）" if isinstance(exc, LIBRARY_ERRORS) else ""
            await self._send_quietly(message, FAILURE + escape(why))  # e.g. the index is still building

    async def answer(self, message: IncomingUpdate, question: str) -> None:
        assert message.chat_id is not None
        if not question:
            await self.send(message, ASK_WHAT)
            return
        keep = self.config.history_turns
        history = await anyio.to_thread.run_sync(self.store.remember, message.chat_id, question, keep)
        log.info(
            "telegram: chat %s, update %s: a question with %d earlier ones",
            message.chat_id,
            message.update_id,
            len(history),
        )
        await self._typing(message)
        reply = await anyio.to_thread.run_sync(ask, self.engine, question, history)
        if reply.answer is not None:
            await anyio.to_thread.run_sync(self.store.save_answer, message.chat_id, reply.answer.hits)
        await self.send_reply(message, reply)

    async def command(self, message: IncomingUpdate, request: Request) -> None:
        assert message.chat_id is not None
        if request.command in {"new", "reset"}:
            await anyio.to_thread.run_sync(self.store.forget, message.chat_id)
            await self.send(message, NEW_CONVERSATION)
        elif request.command == "sources":
            await self.sources(message, request.text)
        else:  # /start, /help, and any command the bot does not know
            await self.send(message, USAGE)

    async def sources(self, message: IncomingUpdate, argument: str) -> None:
        """``/sources``: the last answer's citations; ``/sources N``: its passage N in full."""
        assert message.chat_id is not None
        hits = await anyio.to_thread.run_sync(self.store.last_answer, message.chat_id)
        limit = self.config.max_message_chars
        if hits is None:
            await self.send(message, NO_SOURCES)
        elif not hits:
            await self.send(message, NO_CITATIONS)
        elif not argument:
            for part in format_sources(hits, markdown=True, limit=limit):
                await self.send(message, part)
        else:
            number = argument.split()[0].strip("[]#")
            if not (number.isascii() and number.isdigit() and 1 <= int(number) <= len(hits)):
                await self.send(message, _sources_range(len(hits)))
                return
            hit = hits[int(number) - 1]
            await self._send_parts(
                message,
                format_passage(int(number), hit, markdown=True, limit=limit),
                lambda: format_passage(int(number), hit, markdown=False, limit=limit),
            )

    async def send_reply(self, message: IncomingUpdate, reply: BotReply) -> list[Message]:
        limit = self.config.max_message_chars
        return await self._send_parts(
            message,
            reply.messages(markdown=True, limit=limit),
            lambda: reply.messages(markdown=False, limit=limit),
        )

    async def _send_parts(
        self, message: IncomingUpdate, parts: Sequence[str], plain: _Parts
    ) -> list[Message]:
        """Send MarkdownV2 ``parts``; if Telegram rejects the markup, send the plain-text parts."""
        sent: list[Message] = []
        try:
            for part in parts:
                sent.append(await self.send(message, part))
        except BadRequest as exc:
            log.warning("telegram rejected a MarkdownV2 reply (%s); sending plain text", exc)
            for part in plain():
                sent.append(await self.send(message, part, parse_mode=None))
        return sent

    async def send(
        self, message: IncomingUpdate, text: str, *, parse_mode: str | None = ParseMode.MARKDOWN_V2
    ) -> Message:
        """One ``sendMessage`` in the message's chat (and topic), threaded to it. Flood control is
        AIORateLimiter's (see :mod:`qa.bot.client`)."""
        assert message.chat_id is not None
        threaded = None
        if message.message_id is not None:
            threaded = ReplyParameters(message.message_id, allow_sending_without_reply=True)
        return await self.bot.send_message(
            chat_id=message.chat_id,
            text=text,
            parse_mode=parse_mode,
            reply_parameters=threaded,
            message_thread_id=message.thread_id,
        )

    async def _send_quietly(self, message: IncomingUpdate, text: str) -> None:
        try:
            await self.send(message, text)
        except Exception:
            log.exception("telegram: could not tell chat %s about a failure", message.chat_id)

    async def _typing(self, message: IncomingUpdate) -> None:
        assert message.chat_id is not None
        try:
            await self.bot.send_chat_action(
                chat_id=message.chat_id, action=ChatAction.TYPING, message_thread_id=message.thread_id
            )
        except TelegramError as exc:  # only a courtesy
            log.debug("telegram: sendChatAction failed: %s", exc)

    async def _ready(self) -> None:
        """Initialize the bot once (``getMe``: checks the token, learns the bot's username and id)."""
        if self._initialized:
            return
        if self._init_lock is None:
            self._init_lock = asyncio.Lock()
        async with self._init_lock:
            if not self._initialized:
                await self.bot.initialize()

    @property
    def _initialized(self) -> bool:
        try:
            return self.bot.bot is not None
        except RuntimeError:
            return False
