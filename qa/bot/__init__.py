"""Chat front-ends: answers formatted for messaging platforms, and the Telegram webhook adapter.

``from qa.bot import ask, format_answer`` gives the platform-neutral part (see :mod:`qa.bot.format`);
:func:`qa.bot.telegram.telegram_router` is imported on its own so that ``python-telegram-bot`` is only
needed when the Telegram adapter is enabled.
"""

from __future__ import annotations

from qa.bot.format import BotReply, ask, escape_markdown, format_answer, format_error, text_length

__all__ = ["BotReply", "ask", "escape_markdown", "format_answer", "format_error", "text_length"]
