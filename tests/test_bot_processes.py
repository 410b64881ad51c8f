"""The bot across processes: polling, ``qa telegram set-webhook``/``poll``, and two ``qa serve`` workers
answering one chat. The Bot API is :class:`tests.fake_telegram.FakeTelegram` on 127.0.0.1 (or
:class:`tests.test_bot.FakeRequest` in process); no network.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
from telegram import Chat

from qa.bot.format import follow_up_note
from qa.bot.polling import build_application, webhook_url
from qa.bot.ptb import escape
from qa.errors import WebhookURLError
from tests.fake_telegram import FakeTelegram
from tests.test_bot import SECRET, SECRET_HEADER, FakeRequest, _settings
from tests.test_bot_newsroom import Canned, tg_update
from tests.test_load import ServeProcess, toml_value, write_config
from tests.test_workers import every_worker_ready, free_port

QUESTION = "胡志明市与中国多少个地方保持友好合作关系?"
FOLLOW_UP = "其中有哪些城市?"


def bot_config(root: Path, base_url: str, **telegram: Any) -> Path:
    """The repository's config (fake encoder, a copy of the seeds) with the bot pointed at ``base_url``."""
    path = write_config(root)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data["telegram"].update(
        enabled=True,
        bot_token="123:ABC",
        secret_token=SECRET,
        api_base_url=base_url,
        poll_timeout=1,
        **telegram,
    )
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def qa(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from qa.cli import main; main()", "--config", str(config), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


# -- polling in process ----------------------------------------------------------------------------------


def test_polling_answers_through_the_shared_store(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    transport = FakeRequest()
    canned = Canned()
    application = build_application(canned, settings, request=transport)
    transport.pending = [
        tg_update(n, text).to_dict() for n, text in [(1, QUESTION), (2, FOLLOW_UP), (3, "x")]
    ]

    from qa.bot.client import open_store

    open_store(settings).claim(3)  # already taken by another process (e.g. the webhook)

    async def run() -> None:
        async with application:
            assert application.updater is not None
            await application.updater.start_polling(timeout=0, allowed_updates=["message"])
            await application.start()
            deadline = time.monotonic() + 20
            while len(canned.asked) < 2 or len(transport.sent()) < 2:
                assert time.monotonic() < deadline, transport.calls
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # time to (wrongly) answer update 3
            await application.updater.stop()
            await application.stop()

    asyncio.run(run())
    assert canned.asked == [(QUESTION, ()), (FOLLOW_UP, (QUESTION,))]
    endpoints = [endpoint for endpoint, _ in transport.calls]
    assert "deleteWebhook" in endpoints  # Telegram refuses getUpdates while a webhook is set
    assert {m["reply_parameters"]["message_id"] for m in transport.sent()} == {10, 20}


# -- set-webhook -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://bot.example.com", "https://bot.example.com/telegram/webhook"),
        ("https://bot.example.com/", "https://bot.example.com/telegram/webhook"),
        ("https://bot.example.com:8443/telegram/webhook", "https://bot.example.com:8443/telegram/webhook"),
        (
            "https://bot.example.com/qa/telegram/webhook?x=1",
            "https://bot.example.com/qa/telegram/webhook?x=1",
        ),
    ],
)
def test_webhook_url_adds_the_configured_path(url: str, expected: str) -> None:
    assert webhook_url(url, "/telegram/webhook") == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://bot.example.com",
        "https:///x",
        "https://bot.example.com:8000/",
        "https://b.example.com/#x",
        "bot",
    ],
)
def test_webhook_url_refuses_what_telegram_would_not_call(url: str) -> None:
    with pytest.raises(WebhookURLError):
        webhook_url(url, "/telegram/webhook")


def test_set_webhook_registers_the_url_with_the_secret(tmp_path: Path) -> None:
    with FakeTelegram() as fake:
        config = bot_config(tmp_path, fake.base_url)
        result = qa(config, "telegram", "set-webhook", "https://bot.example.com")
        assert result.returncode == 0, result.stderr
        assert "webhook set: https://bot.example.com/telegram/webhook" in result.stdout
        (call,) = [c for c in fake.calls if c.method == "setWebhook"]
        assert call.params["url"] == "https://bot.example.com/telegram/webhook"
        assert call.params["secret_token"] == SECRET and call.params["allowed_updates"] == ["message"]
        refused = qa(config, "telegram", "set-webhook", "http://bot.example.com")
        assert refused.returncode == 1 and "https" in refused.stderr and "Traceback" not in refused.stderr
        assert len([c for c in fake.calls if c.method == "setWebhook"]) == 1


def test_telegram_commands_without_the_package_say_what_to_install(tmp_path: Path) -> None:
    config = bot_config(tmp_path, "http://127.0.0.1:9/bot")
    hide = "import sys; sys.modules['telegram'] = None; from qa.cli import main; main()"
    for args in (["telegram", "set-webhook", "https://bot.example.com"], ["telegram", "poll"]):
        command = [sys.executable, "-c", hide, "--config", str(config), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 2, result.stderr  # a configuration error
        assert "zh-news-qa[telegram]" in result.stderr and "Traceback" not in result.stderr


# -- qa telegram poll, and two qa serve workers ----------------------------------------------------------


@pytest.mark.slow
def test_qa_telegram_poll_answers_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    with FakeTelegram() as fake:
        fake.updates.append(tg_update(1, QUESTION).to_dict())
        config = bot_config(tmp_path, fake.base_url)
        command = [sys.executable, "-c", "from qa.cli import main; main()", "--config", str(config)]
        proc = subprocess.Popen([*command, "telegram", "poll"], stderr=subprocess.PIPE, text=True)
        try:
            fake.wait_for(lambda: fake.replies_to(10), timeout=120)
        finally:
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        assert "deleteWebhook" in [c.method for c in fake.calls]
        assert "\\[1\\]" in "".join(c.params["text"] for c in fake.replies_to(10))  # MarkdownV2


def _post(base: str, update: Any) -> dict[str, Any]:
    with httpx.Client(base_url=base, timeout=30) as fresh:  # a new connection: any worker may take it
        response = fresh.post("/telegram/webhook", json=update.to_dict(), headers={SECRET_HEADER: SECRET})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.server
def test_two_workers_answer_one_chat_with_its_context_and_each_update_once(tmp_path: Path) -> None:
    with FakeTelegram() as fake:
        port = free_port()
        server = ServeProcess(bot_config(tmp_path, fake.base_url), ("--port", str(port), "--workers", "2"))
        server.start()
        base = f"http://127.0.0.1:{port}"
        try:
            every_worker_ready(base)
            crossed, pairs, workers = 0, 0, set()
            while crossed < 2:
                assert pairs < 40, "the kernel never gave a follow-up to the other worker"
                chat = Chat(5000 + pairs, Chat.PRIVATE)
                first, second = (
                    tg_update(2 * pairs + 1, QUESTION, chat=chat),
                    tg_update(2 * pairs + 2, FOLLOW_UP, chat=chat),
                )
                assert _post(base, first) == {"ok": True}
                fake.wait_for(lambda u=first: fake.replies_to(u.message.message_id))
                assert _post(base, second) == {"ok": True}
                fake.wait_for(lambda u=second: fake.replies_to(u.message.message_id))
                assert _post(base, second) == {"ok": True, "duplicate": True}  # a retried delivery
                asked = {c.pid for c in fake.replies_to(first.message.message_id)}
                followed = {c.pid for c in fake.replies_to(second.message.message_id)}
                assert len(asked) == len(followed) == 1 and None not in asked | followed
                workers |= asked | followed
                crossed += asked != followed
                reply = "\n".join(c.params["text"] for c in fake.replies_to(second.message.message_id))
                assert reply.endswith(escape(follow_up_note(1))), reply  # asked with the first question
                first_reply = "\n".join(c.params["text"] for c in fake.replies_to(first.message.message_id))
                assert "earlier question" not in first_reply
                pairs += 1
            time.sleep(1.0)  # a second answer to a retried update would have arrived by now
            for n in range(1, 2 * pairs + 1):
                parts = fake.replies_to(n * 10)
                assert parts and len({c.params["text"] for c in parts}) == len(parts), n  # answered once
            assert len(workers) == 2
        finally:
            server.stop()
