"""The Telegram webhook: a FastAPI route that checks, parses and acknowledges each delivery.

``telegram_router(engine, settings)`` returns a router with one route, ``POST settings.telegram.path``,
that the HTTP service includes when ``settings.telegram.enabled``. Register it with Telegram once with
``qa telegram set-webhook https://HOST/telegram/webhook`` (it sends the secret token too).

Each delivery is checked against the secret token (header ``X-Telegram-Bot-Api-Secret-Token``; missing →
401, wrong → 403, nothing processed), parsed (:mod:`qa.bot.updates`), claimed once in the shared store
(a repeated ``update_id``, on any worker, is acknowledged with ``{"ok": true, "duplicate": true}`` and
ignored), acknowledged at once (200) and answered in a background task by :class:`qa.bot.chat.ChatBot`.
Updates without text are acknowledged and ignored. When the shared store cannot be written the delivery
gets 503, so Telegram delivers it again later: nothing is lost.

A delivery with the right secret that is not a usable update (over ``server.max_body_bytes``, not UTF-8,
not JSON, nested deeper than :data:`MAX_JSON_DEPTH`, not an object, a shape python-telegram-bot cannot
read, or fields of the wrong type) is acknowledged with 200 ``{"ok": true, "ignored": true, "reason":
...}`` and logged as one warning (the reason, never the body): Telegram retries every non-2xx answer,
and the same bytes would fail the same way each time.

Tests (or another transport) inject the network layer: ``telegram_router(..., request=FakeRequest())``
with a :class:`telegram.request.BaseRequest` subclass, or a whole ``bot=``; and ``store=`` the state.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse
from telegram.ext import ExtBot
from telegram.request import BaseRequest

from qa.bot.chat import ChatBot
from qa.bot.client import make_bot, open_store
from qa.bot.format import QuestionAsker
from qa.bot.store import BotStateError, BotStore
from qa.bot.updates import MAX_JSON_DEPTH, IncomingUpdate, MalformedUpdate, json_depth_exceeds, parse_update
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
MAX_REASON_CHARS = 200  # of the reason logged and returned for an ignored update


def _one_line(text: str) -> str:
    """``text`` with newlines and other unprintable characters escaped, for one log line."""
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


class TelegramWebhook:
    """The webhook route over a :class:`ChatBot` (the bot, its shared state and the engine)."""

    def __init__(
        self,
        engine: QuestionAsker,
        settings: Settings,
        *,
        bot: ExtBot[Any] | None = None,
        request: BaseRequest | None = None,
        store: BotStore | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.telegram
        if not self.config.secret_token:
            raise ConfigError("telegram.secret_token must be set for the Telegram webhook")
        bot = bot if bot is not None else make_bot(self.config, request=request)
        store = store if store is not None else open_store(settings, bot.token)
        self.chat = ChatBot(engine, self.config, bot, store)
        self.router = TelegramRouter(self)

    @property
    def bot(self) -> ExtBot[Any]:
        return self.chat.bot

    def history(self, chat_id: int) -> tuple[str, ...]:
        """The questions of a chat kept for follow-ups, oldest first (from the shared store)."""
        return self.chat.store.history(chat_id)

    async def webhook(self, request: Request, background: BackgroundTasks) -> JSONResponse:
        """Check, parse, claim and acknowledge one delivery; the answer is sent after the response."""
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
        try:
            first = await self.chat.claim(incoming.update_id)
        except BotStateError:
            log.exception("telegram: update %s not taken: the bot's state is unavailable", incoming.update_id)
            return _error(503, "the bot's state is unavailable; deliver again later")
        if not first:
            return JSONResponse({"ok": True, "duplicate": True})
        if incoming.chat_id is None or not incoming.text:
            return JSONResponse({"ok": True, "ignored": True})
        background.add_task(self.chat.handle, incoming)
        return JSONResponse({"ok": True})

    @asynccontextmanager
    async def _lifespan(self, app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {}
        try:
            await self.bot.shutdown()
        except Exception:
            log.exception("telegram: bot shutdown failed")
        self.chat.store.close()


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


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"ok": False, "detail": detail}, status_code=status)


def telegram_router(
    engine: QuestionAsker,
    settings: Settings,
    *,
    bot: ExtBot[Any] | None = None,
    request: BaseRequest | None = None,
    store: BotStore | None = None,
) -> TelegramRouter:
    """The webhook route for ``settings.telegram``; include it in the service's FastAPI app.

    ``bot`` or ``request`` replace the network layer (tests); by default an ``ExtBot`` with
    ``settings.telegram.bot_token`` and AIORateLimiter talks to the Bot API. ``store`` replaces the
    shared state in ``<index.dir>/telegram.sqlite3``. The :class:`TelegramWebhook` behind the router is
    ``router.webhook``.
    """
    return TelegramWebhook(engine, settings, bot=bot, request=request, store=store).router
