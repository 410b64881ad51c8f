"""A fake Telegram Bot API on 127.0.0.1, for tests that run the bot in other processes.

Point ``telegram.api_base_url`` at :attr:`FakeTelegram.base_url`. It answers ``getMe``, ``sendMessage``,
``sendChatAction``, ``getUpdates`` (long polls :attr:`FakeTelegram.updates`), ``setWebhook``,
``deleteWebhook`` and ``getWebhookInfo`` like Telegram, and records every call with the id of the
process that made it (found from the connection's socket in ``/proc``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

BOT_USER = {"id": 123, "is_bot": True, "first_name": "QA", "username": "qa_news_bot"}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    pid: int | None


@dataclass
class FakeTelegram:
    calls: list[Call] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    webhook: str = ""
    lock: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode("utf-8")
                method = self.path.rsplit("/", 1)[-1]
                params = {key: _value(value) for key, value in parse_qsl(body)}
                if "json" in (self.headers.get("content-type") or "") and body:
                    params = json.loads(body)
                result = fake.answer(method, params, _pid_of(self.client_address[1]))
                payload = json.dumps({"ok": True, "result": result}).encode()
                with contextlib.suppress(OSError):  # the caller went away (a poller stopped mid-poll)
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/bot"

    def __enter__(self) -> FakeTelegram:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, method: str, params: dict[str, Any], pid: int | None) -> Any:
        if method == "getUpdates":
            offset = int(params.get("offset") or 0)
            deadline = time.monotonic() + min(float(params.get("timeout") or 0), 1.0)
            with self.lock:
                while time.monotonic() < deadline and not self._pending(offset):
                    self.lock.wait(0.05)
                pending = self._pending(offset)
        with self.lock:
            self.calls.append(Call(method, params, pid))
            self.lock.notify_all()
            if method == "getUpdates":
                return pending
            if method == "getMe":
                return BOT_USER
            if method == "setWebhook":
                self.webhook = params["url"]
                return True
            if method == "deleteWebhook":
                self.webhook = ""
                return True
            if method == "getWebhookInfo":
                return {"url": self.webhook, "has_custom_certificate": False, "pending_update_count": 0}
            if method == "sendMessage":
                return {
                    "message_id": 10_000 + len(self.calls),
                    "date": 1700000000,
                    "chat": {"id": params["chat_id"], "type": "private"},
                    "from": BOT_USER,
                    "text": params["text"],
                }
            return True

    def _pending(self, offset: int) -> list[dict[str, Any]]:
        return [u for u in self.updates if u["update_id"] >= offset]

    def sent(self) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == "sendMessage"]

    def replies_to(self, message_id: int) -> list[Call]:
        return [
            c for c in self.sent() if (c.params.get("reply_parameters") or {}).get("message_id") == message_id
        ]

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate():
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"timed out; calls so far: {[c.method for c in self.calls]}"
                self.lock.wait(min(remaining, 0.1))


def _value(raw: str) -> Any:
    """PTB sends form fields, JSON-encoding everything that is not a string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _pid_of(client_port: int) -> int | None:
    """The process holding the local TCP socket on ``client_port`` (the caller of a request)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == client_port:
                    inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(proc.name)
    return None
