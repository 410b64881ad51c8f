"""A local OpenAI-compatible chat server for tests: scripted replies, on 127.0.0.1, in a thread."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """What the stub answers next: ``content`` (streamed ``piece`` characters at a time), an error
    ``status``, a ``delay`` before answering, ``malformed`` JSON, a stream cut after ``cut`` pieces or slowed by ``pause`` seconds a piece."""

    content: str = ""
    status: int = 200
    delay: float = 0.0
    piece: int = 3
    malformed: bool = False
    cut: int | None = None
    pause: float = 0.0  # between streamed pieces


class OpenAIStub:
    def __init__(self) -> None:
        self.reply = Reply()
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                stub.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                )
                reply = stub.reply
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.status != 200:
                    self._send(
                        reply.status, b'{"error": {"message": "scripted failure", "type": "server_error"}}'
                    )
                elif reply.malformed:
                    self._send(200, b'{"id": "x", "object": "chat.completion", "choices": "nope"')
                elif body.get("stream"):
                    self._stream(reply, body)
                else:
                    message = {"role": "assistant", "content": reply.content}
                    choice = {"index": 0, "message": message, "finish_reason": "stop"}
                    self._send(200, json.dumps(_completion(body, [choice])).encode())

            def _send(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, reply: Reply, body: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                text = reply.content
                pieces = [text[i : i + reply.piece] for i in range(0, len(text), reply.piece)]
                for n, piece in enumerate(pieces):
                    if reply.cut is not None and n == reply.cut:
                        self.wfile.write(b"data: {not json\n\n")
                        self.wfile.flush()
                        return
                    delta = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                    chunk = {**_completion(body, [delta]), "object": "chat.completion.chunk"}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    time.sleep(reply.pause)
                end = {"index": 0, "delta": {}, "finish_reason": "stop"}
                chunk = {**_completion(body, [end]), "object": "chat.completion.chunk"}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OpenAIStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def script(self, content: str = "", **options: Any) -> None:
        self.reply = Reply(content, **options)


def _completion(body: dict[str, Any], choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "stub"),
        "choices": choices,
    }
