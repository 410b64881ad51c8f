"""The Bot API client and the shared state of one configured bot.

:func:`make_bot` is a :class:`telegram.ext.ExtBot` with PTB's :class:`telegram.ext.AIORateLimiter`:
sends stay under Telegram's flood limits (30 messages a second overall, 20 a minute per group) and a
``RetryAfter`` is waited out and retried up to ``telegram.flood_retries`` times. The limits are per
process: with ``--workers N`` each worker paces its own sends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qa.bot.ptb import require_telegram
from qa.bot.store import FILE_NAME, BotStore
from qa.config import Settings, TelegramSettings
from qa.errors import ConfigError

if TYPE_CHECKING:
    from telegram.ext import ExtBot
    from telegram.request import BaseRequest

__all__ = ["bot_id", "make_bot", "open_store"]


def bot_id(token: str) -> int:
    """The bot's numeric id: the part of its token before ``:``."""
    head, colon, _ = token.partition(":")
    if not colon or not head.isascii() or not head.isdigit():
        raise ConfigError("telegram.bot_token is not a bot token (it looks like '123456:ABC-DEF…')")
    return int(head)


def make_bot(config: TelegramSettings, *, request: BaseRequest | None = None) -> ExtBot[Any]:
    """An ``ExtBot`` for ``config.bot_token`` at ``config.api_base_url``; ``request`` (a
    :class:`telegram.request.BaseRequest`) replaces the network layer, e.g. in tests."""
    require_telegram()
    from telegram.ext import AIORateLimiter, ExtBot

    if not config.bot_token:
        raise ConfigError("telegram.bot_token must be set to talk to Telegram (from @BotFather)")
    bot_id(config.bot_token)
    return ExtBot[Any](
        token=config.bot_token,
        base_url=config.api_base_url,
        request=request,
        get_updates_request=request,
        rate_limiter=AIORateLimiter(max_retries=config.flood_retries),
    )


def open_store(settings: Settings, token: str | None = None) -> BotStore:
    """The bot's shared state: ``<index.dir>/telegram.sqlite3``, scoped to the bot of ``token`` (by
    default the configured one). Raises :class:`qa.bot.store.BotStateError` when it cannot be opened."""
    config = settings.telegram
    return BotStore(
        settings.index_dir / FILE_NAME,
        bot_id(config.bot_token if token is None else token),
        history_ttl=config.history_ttl_hours * 3600,
        update_ttl=config.update_ttl_hours * 3600,
    )
