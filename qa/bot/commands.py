"""``qa telegram …``: ``poll`` (development) and ``set-webhook URL`` (production).

Imported by :mod:`qa.cli` without python-telegram-bot: each command checks for it first and stops with
one line naming the extra to install when it is missing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer
from rich.console import Console

from qa.bot.ptb import require_telegram
from qa.errors import QAError

__all__ = ["telegram_app"]

telegram_app = typer.Typer(
    no_args_is_help=True, help="The Telegram bot: poll (development) or set-webhook (production)."
)
out = Console(soft_wrap=True)
log = logging.getLogger(__name__)


@telegram_app.command()
def poll(
    drop_pending: Annotated[
        bool, typer.Option("--drop-pending", help="Skip the updates that waited while nobody polled.")
    ] = False,
) -> None:
    """Answer the bot's chats by long polling: no public URL needed (deletes a registered webhook).
    Ctrl-C stops."""
    from qa import cli
    from qa.bot.polling import ALLOWED_UPDATES, build_application

    require_telegram("qa telegram poll")
    settings = cli.settings()
    application = build_application(cli.engine(), settings)
    log.info("telegram: polling for updates (Ctrl-C stops)")
    application.run_polling(
        timeout=settings.telegram.poll_timeout,
        allowed_updates=list(ALLOWED_UPDATES),
        drop_pending_updates=drop_pending,
    )


@telegram_app.command("set-webhook")
def set_webhook_command(
    url: Annotated[str, typer.Argument(help="https://HOST[/path]; without a path, telegram.path is added.")],
    drop_pending: Annotated[
        bool, typer.Option("--drop-pending", help="Drop the updates waiting to be delivered.")
    ] = False,
) -> None:
    """Point the bot's webhook at URL, with the configured secret token (production)."""
    from qa import cli
    from qa.bot.polling import set_webhook

    require_telegram("qa telegram set-webhook")
    from telegram.error import TelegramError

    config = cli.settings().telegram
    try:
        info = asyncio.run(set_webhook(config, url, drop_pending=drop_pending))
    except TelegramError as exc:
        raise QAError(f"Telegram refused the webhook: {exc}") from exc
    out.print(f"webhook set: {info.url} (pending updates: {info.pending_update_count})")
    if info.last_error_message:
        out.print(f"[yellow]Telegram's last delivery error:[/] {info.last_error_message}")
