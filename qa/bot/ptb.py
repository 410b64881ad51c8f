"""python-telegram-bot, imported on demand: the typed error when it is missing, and its MarkdownV2 escaping.

The package is the optional ``telegram`` extra (``pip install 'zh-news-qa[telegram]'``: python-telegram-bot
with its ``rate-limiter`` extra, i.e. ``aiolimiter``). Everything in :mod:`qa.bot` that talks to Telegram
calls :func:`require_telegram` first; the plain-text formatting of :mod:`qa.bot.format` needs nothing.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from qa.errors import TelegramUnavailableError

__all__ = ["INSTALL_HINT", "escape", "escape_code", "escape_link", "require_telegram"]

INSTALL_HINT = "pip install 'zh-news-qa[telegram]'"
# what the adapter imports: the Bot API, its ext package (ExtBot, Application) and AIORateLimiter's limiter
_MODULES = ("telegram", "telegram.ext", "aiolimiter")


def _helpers() -> ModuleType:
    try:
        return importlib.import_module("telegram.helpers")
    except ImportError:
        require_telegram("MarkdownV2 formatting")
        raise


def require_telegram(purpose: str = "the Telegram bot") -> None:
    """Raise :class:`TelegramUnavailableError` (naming the extra to install) unless python-telegram-bot
    and its rate limiter can be imported."""
    for name in _MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # ModuleNotFoundError, or a module set to None in sys.modules
            raise TelegramUnavailableError(
                f"{purpose} needs python-telegram-bot with its rate limiter, and {name!r} cannot be "
                f"imported ({exc}); install the extra: {INSTALL_HINT}"
            ) from exc


def escape(text: str) -> str:
    """``text`` with every MarkdownV2 markup character escaped (``telegram.helpers.escape_markdown``)."""
    result: str = _helpers().escape_markdown(text, version=2)
    return result


def escape_code(text: str) -> str:
    """``text`` escaped for inside a MarkdownV2 ``code`` or ``pre`` entity (only ``\\`` and `````)."""
    result: str = _helpers().escape_markdown(text, version=2, entity_type="code")
    return result


def escape_link(url: str) -> str:
    """A URL escaped for the ``(...)`` part of a MarkdownV2 inline link (only ``\\`` and ``)``)."""
    result: str = _helpers().escape_markdown(url, version=2, entity_type="text_link")
    return result
