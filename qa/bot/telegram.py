"""The Telegram adapter, webhook mode, on python-telegram-bot.

``telegram_router(engine, settings)`` returns a FastAPI router with one route, ``POST settings.telegram.path``,
that the HTTP service includes when ``settings.telegram.enabled``. Register it with Telegram once::

    https://api.telegram.org/bot<TOKEN>/setWebhook?url=https://HOST/telegram/webhook&secret_token=<SECRET>

Each delivery is checked against the secret token (header ``X-Telegram-Bot-Api-Secret-Token``; missing →
401, wrong → 403, nothing processed), parsed with :meth:`telegram.Update.de_json`, acknowledged at once
(200) and answered in a background task: the question is asked with the chat's earlier questions as
history (the last ``settings.telegram.history_turns``) and the cited answer is sent with
``send_message(..., parse_mode=MarkdownV2)``, one message per part (see :func:`qa.bot.format_answer`).
A second delivery of the same ``update_id`` is acknowledged and ignored. ``/start`` and ``/help`` get a
usage reply, ``/new`` forgets the chat's history; updates without text are acknowledged and ignored.

A delivery with the right secret that is not a usable update (over ``server.max_body_bytes``, not UTF-8,
not JSON, nested deeper than :data:`MAX_JSON_DEPTH`, not an object, a shape python-telegram-bot cannot
read, or a ``message`` whose ``text``/``chat.id`` have the wrong type) is acknowledged with 200
``{"ok": true, "ignored": true, "reason": ...}`` and logged as one warning (the reason, never the body):
Telegram retries every non-2xx answer, and the same bytes would fail the same way each time.

Tests (or another transport) inject the network layer: ``telegram_router(..., request=FakeRequest())``
with a :class:`telegram.request.BaseRequest` subclass, or a whole ``bot=``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse
from telegram import Bot, Chat, Message, Update
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, RetryAfter, TelegramError
from telegram.request import BaseRequest

from qa.bot.format import BotReply, QuestionAsker, ask, escape_markdown
from qa.config import Settings
from qa.errors import ConfigError

__all__ = [
    "MAX_JSON_DEPTH",
    "SECRET_HEADER",
    "IncomingUpdate",
    "MalformedUpdate",
    "TelegramRouter",
    "TelegramWebhook",
    "json_depth_exceeds",
    "parse_update",
    "telegram_router",
]

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
SEEN_UPDATES = 4096  # update_ids remembered to drop duplicate deliveries
MAX_CHATS = 10_000  # chats whose history is kept (least recently active forgotten first)
MAX_RETRY_AFTER = 30.0  # seconds; a longer flood-control wait gives up on the message
# Real updates nest under 10 levels (update.message.reply_to_message.entities[0].user is 6); json.loads
# and Update.de_json recurse once or more per level, so a far deeper body ends in RecursionError.
MAX_JSON_DEPTH = 64
MAX_REASON_CHARS = 200  # of the reason logged and returned for an ignored update
CHAT_ID_RANGE = range(-(2**63), 2**63)  # Bot API ids are 64-bit signed integers
# What Update.de_json raises on a JSON object of the wrong shape: TypeError (missing or unexpected
# arguments, ``**`` of a non-mapping), AttributeError (``.copy()`` of a non-dict), ValueError and
# OverflowError/OSError (``datetime.fromtimestamp`` of NaN, 1e300, inf), KeyError/IndexError.
_PARSE_ERRORS = (TypeError, AttributeError, ValueError, ArithmeticError, OSError, KeyError, IndexError)
# A JSON string (possessive, so linear time; an unterminated one runs to the end of the text)
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*+"?', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")

USAGE = "*新闻问答 News Q&A*\n" + escape_markdown(
    "直接发送一个关于新闻的问题，我会回答并给出带编号的出处（标题、日期、原文位置）。"
    "接着追问时会参考本对话中之前的问题。\n"
    "Send a question about the news; the answer comes with numbered citations "
    "(title, date, doc_id:start-end). Follow-up questions use your earlier questions.\n\n"
    "/new — 开始新对话 start a new conversation\n"
    "/help — 帮助 this help"
)
NEW_CONVERSATION = escape_markdown("好的，已开始新对话。 OK, new conversation.")
FAILURE = escape_markdown("抱歉，出错了，请稍后再试。 Sorry, something went wrong; please try again later.")


class MalformedUpdate(ValueError):
    """A delivery that is not an update this adapter can use; the route acknowledges it and drops it."""


@dataclass(frozen=True, slots=True)
class IncomingUpdate:
    """What the webhook uses of an update: its id and, for a text message, the chat and the text."""

    update_id: int
    chat_id: int | None = None  # None: nothing to answer (no message, or a message without text)
    text: str = ""


def json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether JSON ``text`` nests arrays and objects more than ``limit`` levels deep.

    A cheap scan over the brackets outside strings, run before :func:`json.loads` (which recurses once
    per level). On text that is not JSON it may overestimate, never underestimate, the depth
    :func:`json.loads` would reach before failing.
    """
    depth = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth = max(depth - 1, 0)
    return False


def parse_update(body: bytes, bot: Bot | None = None) -> IncomingUpdate:
    """Read one webhook body as an update. Raises :class:`MalformedUpdate` (with the reason, not the
    body) when it is not UTF-8 JSON of bounded depth, not an object, not readable by
    :meth:`telegram.Update.de_json`, or carries fields of the wrong type."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedUpdate(f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    if json_depth_exceeds(text, MAX_JSON_DEPTH):
        raise MalformedUpdate(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or an integer over the digit limit
        raise MalformedUpdate(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedUpdate(f"a JSON {type(data).__name__}, not an object")
    try:
        update = Update.de_json(data, bot)
    except _PARSE_ERRORS as exc:
        raise MalformedUpdate(f"not a Telegram update: {type(exc).__name__}: {exc}") from exc
    return _incoming(update)


def _incoming(update: Update) -> IncomingUpdate:
    """Check the types of the fields the webhook uses (de_json keeps whatever JSON types it was given)."""
    update_id = update.update_id
    if not _is_int(update_id):
        raise MalformedUpdate(f"update_id is a {type(update_id).__name__}, not an integer")
    message: object = update.message
    if message is None:  # edited_message, channel_post, callback_query, ...: nothing to answer
        return IncomingUpdate(update_id)
    if not isinstance(message, Message):
        raise MalformedUpdate(f"message is a {type(message).__name__}")
    if message.text is None:  # a sticker, a photo, a service message
        return IncomingUpdate(update_id)
    if not isinstance(message.text, str):
        raise MalformedUpdate(f"message.text is a {type(message.text).__name__}, not a string")
    chat: object = message.chat
    if not isinstance(chat, Chat):
        raise MalformedUpdate("a text message without a chat")
    if not _is_int(chat.id) or chat.id not in CHAT_ID_RANGE:
        raise MalformedUpdate(f"message.chat.id is not a 64-bit integer ({type(chat.id).__name__})")
    return IncomingUpdate(update_id, chat.id, message.text)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _one_line(text: str) -> str:
    """``text`` with newlines and other unprintable characters escaped, for one log line."""
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


class TelegramWebhook:
    """The state behind the webhook route: the bot, seen update ids and per-chat history."""

    def __init__(
        self,
        engine: QuestionAsker,
        settings: Settings,
        *,
        bot: Bot | None = None,
        request: BaseRequest | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.config = settings.telegram
        if not self.config.secret_token:
            raise ConfigError("telegram.secret_token must be set for the Telegram webhook")
        if bot is None:
            if not self.config.bot_token:
                raise ConfigError("telegram.bot_token must be set to reply on Telegram")
            bot = Bot(token=self.config.bot_token, request=request, get_updates_request=request)
        self.bot = bot
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._history: OrderedDict[int, deque[str]] = OrderedDict()
        self._init_lock: asyncio.Lock | None = None
        self.router = TelegramRouter(self)

    # -- the route -------------------------------------------------------------------------------------
    async def webhook(self, request: Request, background: BackgroundTasks) -> JSONResponse:
        """Check, parse and acknowledge one delivery; the answer is sent after the response."""
        given = request.headers.get(SECRET_HEADER)
        if given is None:
            return _error(401, "missing secret token header")
        if not hmac.compare_digest(given.encode("utf-8"), self.config.secret_token.encode("utf-8")):
            return _error(403, "wrong secret token")
        limit = self.settings.server.max_body_bytes
        body = await _read_body(request, limit)
        try:
            if body is None:
                # 200, not 413: Telegram retries every non-2xx delivery and would send the same bytes
                # again and again (no real update comes near the limit: text is capped at 4096
                # characters); the sender holds the secret, the warning tells the operator. (In the
                # HTTP service, BodyLimitMiddleware sees a declared Content-Length first: 413 there.)
                raise MalformedUpdate(f"body over server.max_body_bytes ({limit} bytes)")
            incoming = parse_update(body, self.bot)
        except MalformedUpdate as exc:
            reason = _one_line(str(exc))[:MAX_REASON_CHARS]
            log.warning("telegram: ignored a malformed update: %s", reason)
            return JSONResponse({"ok": True, "ignored": True, "reason": reason})
        if not self._first_delivery(incoming.update_id):
            return JSONResponse({"ok": True, "duplicate": True})
        if incoming.chat_id is None or not incoming.text:
            return JSONResponse({"ok": True, "ignored": True})
        text = incoming.text.strip()
        if text.startswith("/"):
            background.add_task(self.command, incoming.chat_id, text)
        else:
            history = self.remember(incoming.chat_id, text)
            background.add_task(self.answer, incoming.chat_id, text, history)
        return JSONResponse({"ok": True})

    def _first_delivery(self, update_id: int) -> bool:
        if update_id in self._seen:
            self._seen.move_to_end(update_id)
            return False
        self._seen[update_id] = None
        while len(self._seen) > SEEN_UPDATES:
            self._seen.popitem(last=False)
        return True

    def remember(self, chat_id: int, question: str) -> tuple[str, ...]:
        """Record a question of a chat; returns the chat's earlier questions (oldest first)."""
        turns = self._history.get(chat_id)
        if turns is None:
            turns = self._history[chat_id] = deque(maxlen=self.config.history_turns)
            while len(self._history) > MAX_CHATS:
                self._history.popitem(last=False)
        self._history.move_to_end(chat_id)
        earlier = tuple(turns)
        turns.append(question)
        return earlier

    def history(self, chat_id: int) -> tuple[str, ...]:
        """The questions of a chat kept for follow-ups, oldest first."""
        return tuple(self._history.get(chat_id, ()))

    # -- background work -------------------------------------------------------------------------------
    async def answer(self, chat_id: int, question: str, history: Sequence[str]) -> None:
        """Answer one question in a chat. Never raises: failures are logged (and told to the user)."""
        try:
            await self._ready()
            await self._typing(chat_id)
            reply = await anyio.to_thread.run_sync(ask, self.engine, question, tuple(history))
            await self.send_reply(chat_id, reply)
        except Exception:
            log.exception("telegram: could not answer chat %s", chat_id)
            await self._send_quietly(chat_id, FAILURE)

    async def command(self, chat_id: int, text: str) -> None:
        """Reply to a /command. Never raises."""
        name = text
        try:
            name, _, addressee = text.split(maxsplit=1)[0][1:].partition("@")
            await self._ready()
            username = self.bot.username if self._initialized else None
            if addressee and username and addressee.lower() != username.lower():
                return  # a command for another bot in a group
            if name.lower() in {"new", "reset"}:
                self._history.pop(chat_id, None)
                await self.send(chat_id, NEW_CONVERSATION)
            else:
                await self.send(chat_id, USAGE)
        except Exception:
            log.exception("telegram: could not answer command %r in chat %s", name, chat_id)

    async def send_reply(self, chat_id: int, reply: BotReply) -> list[Message]:
        """Send a reply as MarkdownV2 parts; if Telegram rejects the markup, send the plain-text parts."""
        limit = self.config.max_message_chars
        sent: list[Message] = []
        try:
            for part in reply.messages(markdown=True, limit=limit):
                sent.append(await self.send(chat_id, part))
        except BadRequest as exc:
            log.warning("telegram rejected a MarkdownV2 reply (%s); sending plain text", exc)
            for part in reply.messages(markdown=False, limit=limit):
                sent.append(await self.send(chat_id, part, parse_mode=None))
        return sent

    async def send(
        self, chat_id: int, text: str, *, parse_mode: str | None = ParseMode.MARKDOWN_V2
    ) -> Message:
        """One ``sendMessage``, retried once after Telegram's flood-control wait."""
        for attempt in (1, 2):
            try:
                return await self.bot.send_message(chat_id=chat_id, text=text, parse_mode=parse_mode)
            except RetryAfter as exc:
                wait = _seconds(exc.retry_after)
                if attempt == 2 or wait > MAX_RETRY_AFTER:
                    raise
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def _send_quietly(self, chat_id: int, text: str) -> None:
        try:
            await self.send(chat_id, text)
        except Exception:
            log.exception("telegram: could not tell chat %s about a failure", chat_id)

    async def _typing(self, chat_id: int) -> None:
        try:
            await self.bot.send_chat_action(chat_id=chat_id, action=ChatAction.TYPING)
        except TelegramError as exc:  # only a courtesy
            log.debug("telegram: sendChatAction failed: %s", exc)

    @property
    def _initialized(self) -> bool:
        try:
            return self.bot.bot is not None
        except RuntimeError:
            return False

    async def _ready(self) -> None:
        """Initialize the bot once (``getMe``: checks the token, learns the bot's username)."""
        if self._initialized:
            return
        if self._init_lock is None:
            self._init_lock = asyncio.Lock()
        async with self._init_lock:
            if not self._initialized:
                await self.bot.initialize()

    @asynccontextmanager
    async def _lifespan(self, app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {}
        try:
            await self.bot.shutdown()
        except Exception:
            log.exception("telegram: bot shutdown failed")


class TelegramRouter(APIRouter):
    """The webhook's router; ``webhook`` is the :class:`TelegramWebhook` that serves it."""

    def __init__(self, webhook: TelegramWebhook) -> None:
        super().__init__(lifespan=webhook._lifespan)
        self.webhook = webhook
        self.add_api_route(
            webhook.config.path,
            webhook.webhook,
            methods=["POST"],
            include_in_schema=False,
            response_class=JSONResponse,
        )


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is over ``limit`` bytes (declared or received; reading stops)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"ok": False, "detail": detail}, status_code=status)


def telegram_router(
    engine: QuestionAsker,
    settings: Settings,
    *,
    bot: Bot | None = None,
    request: BaseRequest | None = None,
) -> APIRouter:
    """The webhook route for ``settings.telegram``; include it in the service's FastAPI app.

    ``bot`` or ``request`` replace the network layer (tests); by default a :class:`telegram.Bot` with
    ``settings.telegram.bot_token`` talks to the Bot API. The :class:`TelegramWebhook` behind the router is
    ``router.webhook`` (its bot and the per-chat history).
    """
    return TelegramWebhook(engine, settings, bot=bot, request=request).router
