"""Polling for development, and registering the webhook for production.

``qa telegram poll`` runs :func:`build_application` with PTB's ``Application.run_polling``: it deletes a
registered webhook (Telegram refuses ``getUpdates`` while one is set), long-polls ``getUpdates`` and
hands each update to the same :class:`qa.bot.chat.ChatBot` as the webhook (same shared store, so a poller
and the service never answer one update twice). No public URL or TLS is needed.

``qa telegram set-webhook URL`` (:func:`set_webhook`) registers ``URL`` with the configured secret
token, for ``message`` updates only, and returns Telegram's view of it (``getWebhookInfo``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from qa.bot.client import make_bot, open_store
from qa.bot.format import QuestionAsker
from qa.bot.ptb import require_telegram
from qa.config import Settings, TelegramSettings
from qa.errors import BotStateError, ConfigError, WebhookURLError

if TYPE_CHECKING:
    from telegram import Update, WebhookInfo
    from telegram.ext import Application
    from telegram.request import BaseRequest

__all__ = ["ALLOWED_UPDATES", "WEBHOOK_PORTS", "build_application", "set_webhook", "webhook_url"]

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ("message",)  # the only kind the bot answers; Telegram keeps the others to itself
WEBHOOK_PORTS = (443, 80, 88, 8443)  # the ports Telegram delivers webhooks to


def build_application(
    engine: QuestionAsker, settings: Settings, *, request: BaseRequest | None = None
) -> Application[Any, Any, Any, Any, Any, Any]:
    """A PTB ``Application`` whose one handler passes every update to the :class:`ChatBot`."""
    require_telegram("qa telegram poll")
    from telegram import Update
    from telegram.ext import Application, ContextTypes, TypeHandler

    from qa.bot.chat import ChatBot
    from qa.bot.updates import MalformedUpdate, incoming

    bot = make_bot(settings.telegram, request=request)
    chat = ChatBot(engine, settings.telegram, bot, open_store(settings, bot.token))

    async def on_update(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        try:
            message = incoming(update)
        except MalformedUpdate as exc:
            log.warning("telegram: ignored a malformed update: %s", exc)
            return
        try:
            first = await chat.claim(message.update_id)
        except BotStateError:
            log.exception(
                "telegram: update %s not answered: the bot's state is unavailable", message.update_id
            )
            return
        if first:
            await chat.handle(message)

    async def close_store(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        chat.store.close()

    application = Application.builder().bot(bot).post_shutdown(close_store).build()
    application.add_handler(TypeHandler(Update, on_update))
    return application


def webhook_url(url: str, path: str) -> str:
    """``url`` checked for what Telegram delivers to (https, a host, one of :data:`WEBHOOK_PORTS`, no
    fragment), with the configured ``telegram.path`` added when ``url`` has no path."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise WebhookURLError(f"{url!r} is not a URL: {exc}") from exc
    if parts.scheme != "https" or not parts.hostname:
        raise WebhookURLError(f"{url!r}: Telegram delivers updates only to https://HOST/... URLs")
    if port is not None and port not in WEBHOOK_PORTS:
        ports = ", ".join(map(str, WEBHOOK_PORTS))
        raise WebhookURLError(f"{url!r}: Telegram delivers webhooks only to the ports {ports}")
    if parts.fragment:
        raise WebhookURLError(f"{url!r}: a webhook URL has no #fragment")
    if parts.path in {"", "/"}:
        parts = parts._replace(path=path)
    elif parts.path.rstrip("/") != path.rstrip("/"):
        log.warning(
            "telegram: the webhook path %s is not telegram.path (%s): right only if a proxy rewrites it",
            parts.path,
            path,
        )
    return urlunsplit(parts)


async def set_webhook(
    config: TelegramSettings,
    url: str,
    *,
    drop_pending: bool = False,
    request: BaseRequest | None = None,
) -> WebhookInfo:
    """Register ``url`` (see :func:`webhook_url`) as the bot's webhook with ``config.secret_token``;
    returns ``getWebhookInfo``. Raises ConfigError without a secret token, WebhookURLError for a URL
    Telegram would not use, and PTB's TelegramError when Telegram refuses."""
    if not config.secret_token:
        raise ConfigError("telegram.secret_token must be set: Telegram sends it with every delivery")
    target = webhook_url(url, config.path)
    bot = make_bot(config, request=request)
    async with bot:
        await bot.set_webhook(
            url=target,
            secret_token=config.secret_token,
            allowed_updates=list(ALLOWED_UPDATES),
            drop_pending_updates=drop_pending,
        )
        info: WebhookInfo = await bot.get_webhook_info()
    return info
