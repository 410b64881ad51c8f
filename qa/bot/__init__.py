"""Chat front-ends: answers formatted for messaging platforms, and the Telegram bot.

``from qa.bot import ask, format_answer`` gives the platform-neutral part (see :mod:`qa.bot.format`;
MarkdownV2 output escapes with python-telegram-bot's helper, plain text needs nothing more). The Telegram
bot (:mod:`qa.bot.telegram`: the webhook; :mod:`qa.bot.polling`; :mod:`qa.bot.chat`: what it answers)
needs the optional ``telegram`` extra; :func:`qa.bot.ptb.require_telegram` raises a typed error without it.
"""

from __future__ import annotations

from qa.bot.format import BotReply, ask, format_answer, format_error, format_passage, text_length

__all__ = ["BotReply", "ask", "format_answer", "format_error", "format_passage", "text_length"]
