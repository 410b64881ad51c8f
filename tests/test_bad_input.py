"""Bad input, one table: each hand-picked request and the status (and error code) the service must answer.

Every case runs in process (FastAPI's TestClient, and a bare ASGI call for paths a client would
normalise) and, with the ``server`` marker, against a real uvicorn on 127.0.0.1 (httpx, and
``http.client`` for raw request targets such as ``/v1/documents/../secret``).

After each request: an error has the one JSON error shape, no response leaks the canary files planted
next to the corpus, no file outside the corpus folder was created, changed or removed, the corpus
changed only as the case allows (a basename-only upload), and the service is still ready.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from qa.api.app import create_app
from qa.engine import Engine
from tests.conftest import settings_in

JSON = {"content-type": "application/json"}
LONG = "问" * 2001
CANARY = "CANARY-7d1f0c-outside-the-corpus"
NEW_TEXT = (
    "芽庄市与昆明市签署友好城市协议\n\n"
    "3月5日,芽庄市与昆明市在芽庄签署友好城市协议,双方将开通直航航线,并在旅游、教育和农业领域开展合作。\n"
)


class Chunked:
    """A body sent with chunked transfer encoding (no Content-Length); iterable more than once."""

    def __init__(self, total: int, size: int = 64 * 1024) -> None:
        self.total, self.size = total, size

    def __iter__(self) -> Iterator[bytes]:
        left = self.total
        while left > 0:
            yield b" " * min(self.size, left)
            left -= self.size


def nested(depth: int, closed: bool = True) -> bytes:
    return b"[" * depth + (b"]" * depth if closed else b"")


def multipart(filename: str, body: bytes, boundary: str = "qa-boundary") -> dict[str, Any]:
    """A hand-written multipart upload: the file name goes into the header exactly as given."""
    content = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + body
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return {"content": content, "headers": {"content-type": f"multipart/form-data; boundary={boundary}"}}


@dataclass(frozen=True)
class Bad:
    name: str
    method: str
    path: str  # the request target, sent verbatim when ``raw``
    status: int | None  # None: any 4xx with the error shape
    code: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    stores: str | None = None  # a corpus file the request may create (removed again afterwards)
    wire: bool = False  # send target, headers and body exactly as written (no client fixes them)

    @property
    def raw(self) -> bool:
        """Sent byte for byte: on request, or for targets an HTTP client would rewrite (dot segments)."""
        segments = self.path.split("?")[0].split("/")
        return self.wire or any(s.lower() in {".", "..", "%2e", "%2e%2e", ".%2e", "%2e."} for s in segments)

    @property
    def raw_headers(self) -> dict[str, str]:
        headers: dict[str, str] = self.kwargs.get("headers", {})
        return headers

    @property
    def raw_body(self) -> bytes:
        body: bytes = self.kwargs.get("content", b"")
        return body


def bad(name: str, method: str, path: str, status: int | None, code: str | None = None, **kwargs: Any) -> Any:
    stores = kwargs.pop("stores", None)
    wire = kwargs.pop("wire", False)
    return pytest.param(Bad(name, method, path, status, code, kwargs, stores, wire), id=name)


def upload(name: str, filename: str, status: int | None, code: str | None = None, **extra: Any) -> Any:
    return bad(
        name, "POST", "/v1/documents", status, code, files={"file": (filename, NEW_TEXT.encode())}, **extra
    )


CASES = [
    # /v1/ask
    bad("empty question", "POST", "/v1/ask", 422, "invalid_input", json={"question": ""}),
    bad("blank question", "POST", "/v1/ask", 422, "invalid_input", json={"question": " \n\t\u3000 "}),
    bad("long question", "POST", "/v1/ask", 422, "invalid_input", json={"question": LONG}),
    bad("missing question", "POST", "/v1/ask", 422, "invalid_request", json={"top_k": 3}),
    bad("null question", "POST", "/v1/ask", 422, "invalid_request", json={"question": None}),
    bad("number question", "POST", "/v1/ask", 422, "invalid_request", json={"question": 42}),
    bad("list question", "POST", "/v1/ask", 422, "invalid_request", json={"question": ["a"]}),
    bad("top_k zero", "POST", "/v1/ask", 422, "invalid_input", json={"question": "越南", "top_k": 0}),
    bad("top_k negative", "POST", "/v1/ask", 422, "invalid_input", json={"question": "越南", "top_k": -1}),
    bad("top_k too big", "POST", "/v1/ask", 422, "invalid_input", json={"question": "越南", "top_k": 51}),
    bad("top_k huge", "POST", "/v1/ask", 422, None, json={"question": "越南", "top_k": 10**30}),
    bad("top_k string", "POST", "/v1/ask", 422, "invalid_request", json={"question": "越南", "top_k": "3"}),
    bad("top_k float", "POST", "/v1/ask", 422, "invalid_request", json={"question": "越南", "top_k": 2.5}),
    bad("top_k bool", "POST", "/v1/ask", 422, "invalid_request", json={"question": "越南", "top_k": True}),
    bad("unknown field", "POST", "/v1/ask", 422, "invalid_request", json={"question": "越南", "k": 3}),
    bad(
        "history not list",
        "POST",
        "/v1/ask",
        422,
        "invalid_request",
        json={"question": "越南", "history": "x"},
    ),
    bad(
        "history bad role",
        "POST",
        "/v1/ask",
        422,
        "invalid_request",
        json={"question": "越南", "history": [{"role": "robot", "content": "x"}]},
    ),
    bad(
        "history no content",
        "POST",
        "/v1/ask",
        422,
        "invalid_request",
        json={"question": "越南", "history": [{"role": "user"}]},
    ),
    bad(
        "date slashes",
        "POST",
        "/v1/ask",
        422,
        "invalid_request",
        json={"question": "越南", "filters": {"date_from": "2025/01/01"}},
    ),
    bad(
        "date impossible",
        "POST",
        "/v1/ask",
        422,
        "invalid_request",
        json={"question": "越南", "filters": {"date_to": "2025-02-30"}},
    ),
    bad(
        "date with time",
        "POST",
        "/v1/ask",
        422,
        "invalid_request",
        json={"question": "越南", "filters": {"date_to": "2025-02-03T10:00:00"}},
    ),
    bad(
        "dates reversed",
        "POST",
        "/v1/ask",
        422,
        "invalid_request",
        json={"question": "越南", "filters": {"date_from": "2025-02-01", "date_to": "2025-01-01"}},
    ),
    bad(
        "doc_ids not list",
        "POST",
        "/v1/ask",
        422,
        "invalid_request",
        json={"question": "越南", "filters": {"doc_ids": "abc"}},
    ),
    bad(
        "unknown filter",
        "POST",
        "/v1/ask",
        422,
        "invalid_request",
        json={"question": "越南", "filters": {"source": "x"}},
    ),
    bad("body is a list", "POST", "/v1/ask", 422, "invalid_request", json=["越南"]),
    bad("body is a string", "POST", "/v1/ask", 422, "invalid_request", json="越南"),
    bad("invalid json", "POST", "/v1/ask", 400, "invalid_json", content=b'{"question": ', headers=JSON),
    bad(
        "trailing comma", "POST", "/v1/ask", 400, "invalid_json", content=b'{"question": "a",}', headers=JSON
    ),
    bad(
        "invalid utf-8",
        "POST",
        "/v1/ask",
        400,
        "invalid_encoding",
        content=b'{"question": "\xff\xfe\xe8"}',
        headers=JSON,
    ),
    bad(
        "lone surrogate",
        "POST",
        "/v1/ask",
        422,
        "invalid_request",
        content=b'{"question": "\\ud800"}',
        headers=JSON,
    ),
    bad("empty body", "POST", "/v1/ask", 422, "invalid_request", content=b"", headers=JSON),
    bad(
        "text/plain",
        "POST",
        "/v1/ask",
        415,
        "unsupported_media_type",
        content=b'{"question": "a"}',
        headers={"content-type": "text/plain"},
    ),
    bad("no content type", "POST", "/v1/ask", 415, "unsupported_media_type", content=b'{"question": "a"}'),
    bad("form body", "POST", "/v1/ask", 415, "unsupported_media_type", data={"question": "a"}),
    bad(
        "too large (content-length)",
        "POST",
        "/v1/ask",
        413,
        "payload_too_large",
        content=b" " * 1000001,
        headers=JSON,
    ),
    bad(
        "too large (chunked)",
        "POST",
        "/v1/ask",
        413,
        "payload_too_large",
        content=Chunked(1_200_000),
        headers=JSON,
    ),
    bad("wrong method", "GET", "/v1/ask", 405, "method_not_allowed"),
    bad("unknown route", "GET", "/v1/nothing", 404, "not_found"),
    # the question itself
    bad("NUL in question", "POST", "/v1/ask", 200, json={"question": "越南\u0000中国贸易额"}),
    bad(
        "control characters",
        "POST",
        "/v1/ask",
        200,
        json={"question": "越南\u0001\u001b[31m\u007f\u200b\ufeff中国"},
    ),
    bad(
        "only control characters",
        "POST",
        "/v1/ask",
        422,
        "invalid_input",
        json={"question": "\u0000\u0001\u0002"},
    ),
    bad("emoji only", "POST", "/v1/ask", 200, json={"question": "😀🇻🇳🤔"}),
    bad("RTL override", "POST", "/v1/ask", 200, json={"question": "\u202e越南\u202c与中国"}),
    bad(
        "10,000 repeated characters",
        "POST",
        "/v1/ask",
        422,
        "invalid_input",
        json={"question": "问" * 10_000},
    ),
    bad(
        "10,000 history turns",
        "POST",
        "/v1/ask",
        422,
        "invalid_request",
        json={"question": "越南", "history": [{"role": "user", "content": "x"}] * 10_000},
    ),
    bad(
        "doc_ids filter traversal",
        "POST",
        "/v1/ask",
        200,
        json={"question": "越南", "filters": {"doc_ids": ["../secret", "/etc/passwd", "..\\secret"]}},
    ),
    # bodies and content types
    bad("1 MB body", "POST", "/v1/ask", 413, "payload_too_large", json={"question": "a" * (1 << 20)}),
    bad(
        "lying content-length",
        "POST",
        "/v1/ask",
        413,
        "payload_too_large",
        content=b"{}",
        headers={**JSON, "content-length": "5000000"},
        wire=True,
    ),
    bad(
        "deeply nested JSON", "POST", "/v1/ask", 400, None, content=nested(10_000, closed=False), headers=JSON
    ),
    bad("deeply nested closed JSON", "POST", "/v1/ask", 400, None, content=nested(10_000), headers=JSON),
    bad(
        "deeply nested history",
        "POST",
        "/v1/ask",
        400,
        None,
        content=b'{"question": "a", "history": ' + nested(10_000) + b"}",
        headers=JSON,
    ),
    bad(
        "deeply nested filters",
        "POST",
        "/v1/ask",
        400,
        None,
        content=b'{"question": "a", "filters": {"doc_ids": ' + nested(100_000) + b"}}",
        headers=JSON,
    ),
    bad(
        "JSON with BOM", "POST", "/v1/ask", 200, None, content=b'\xef\xbb\xbf{"question": "a"}', headers=JSON
    ),
    bad(
        "UTF-16 JSON",
        "POST",
        "/v1/ask",
        200,
        None,
        content='{"question": "越南"}'.encode("utf-16"),
        headers=JSON,
    ),
    bad(
        "NaN top_k",
        "POST",
        "/v1/ask",
        422,
        "invalid_request",
        content=b'{"question": "a", "top_k": NaN}',
        headers=JSON,
    ),
    bad(
        "multipart to a JSON route",
        "POST",
        "/v1/ask",
        415,
        "unsupported_media_type",
        files={"file": ("q.txt", b'{"question": "a"}')},
    ),
    bad(
        "xml",
        "POST",
        "/v1/ask",
        415,
        "unsupported_media_type",
        content=b"<question>a</question>",
        headers={"content-type": "application/xml"},
    ),
    # /v1/chat/completions
    bad(
        "surrogate in chat model",
        "POST",
        "/v1/chat/completions",
        422,
        "invalid_request",
        content=b'{"model": "\\udfff", "messages": [{"role": "user", "content": "a"}]}',
        headers=JSON,
    ),
    bad("chat no messages", "POST", "/v1/chat/completions", 422, None, json={"model": "m", "messages": []}),
    bad(
        "chat no user",
        "POST",
        "/v1/chat/completions",
        422,
        "invalid_request",
        json={"model": "m", "messages": [{"role": "system", "content": "x"}]},
    ),
    bad(
        "chat empty question",
        "POST",
        "/v1/chat/completions",
        422,
        "invalid_input",
        json={"model": "m", "messages": [{"role": "user", "content": " "}]},
    ),
    bad(
        "chat bad role",
        "POST",
        "/v1/chat/completions",
        422,
        "invalid_request",
        json={"model": "m", "messages": [{"role": "robot", "content": "x"}]},
    ),
    bad(
        "chat messages not list",
        "POST",
        "/v1/chat/completions",
        422,
        "invalid_request",
        json={"model": "m", "messages": "hi"},
    ),
    bad(
        "chat stream not bool",
        "POST",
        "/v1/chat/completions",
        422,
        "invalid_request",
        json={"model": "m", "stream": "maybe", "messages": [{"role": "user", "content": "x"}]},
    ),
    bad(
        "chat long question",
        "POST",
        "/v1/chat/completions",
        422,
        "invalid_input",
        json={"model": "m", "stream": True, "messages": [{"role": "user", "content": LONG}]},
    ),
    bad(
        "chat deeply nested JSON",
        "POST",
        "/v1/chat/completions",
        400,
        None,
        content=b'{"messages": ' + nested(10_000) + b"}",
        headers=JSON,
    ),
    bad(
        "chat stream as number",
        "POST",
        "/v1/chat/completions",
        422,
        "invalid_request",
        json={"stream": 0, "messages": [{"role": "user", "content": "越南"}]},
    ),
    bad(
        "chat 1 MB body",
        "POST",
        "/v1/chat/completions",
        413,
        "payload_too_large",
        json={"messages": [{"role": "user", "content": "问" * (1 << 20)}]},
    ),
    bad(
        "chat text/plain",
        "POST",
        "/v1/chat/completions",
        415,
        "unsupported_media_type",
        content=b"hi",
        headers={"content-type": "text/plain"},
    ),
    # documents
    bad(
        "surrogate in document",
        "POST",
        "/v1/documents",
        400,
        "invalid_json",
        content=b'{"doc_id": "x", "text": "\\ud83d abc"}',
        headers=JSON,
    ),
    bad(
        "low surrogate in document",
        "POST",
        "/v1/documents",
        None,
        None,
        content=b'{"doc_id": "x", "text": "abc \\udfff"}',
        headers=JSON,
    ),
    bad("unknown doc", "GET", "/v1/documents/no-such-article", 404, "not_found"),
    bad("delete unknown doc", "DELETE", "/v1/documents/no-such-article", 404, "not_found"),
    bad("traversal encoded", "GET", "/v1/documents/..%2F..%2Fconfig.toml", 404, "not_found"),
    bad("traversal delete", "DELETE", "/v1/documents/..%2Fseeds", 404, "not_found"),
    bad("dot-dot id", "GET", "/v1/documents/..config", 422, "invalid_input"),
    bad("dot-dot inside id", "DELETE", "/v1/documents/a..b", 422, "invalid_input"),
    bad("hidden id", "DELETE", "/v1/documents/.hidden", 422, "invalid_input"),
    bad("list bad limit", "GET", "/v1/documents?limit=0", 422, "invalid_request"),
    bad("list bad offset", "GET", "/v1/documents?offset=-1", 422, "invalid_request"),
    bad("list limit text", "GET", "/v1/documents?limit=ten", 422, "invalid_request"),
    bad(
        "add traversal id",
        "POST",
        "/v1/documents",
        422,
        "invalid_input",
        json={"doc_id": "../evil", "text": NEW_TEXT},
    ),
    bad(
        "add slash id",
        "POST",
        "/v1/documents",
        422,
        "invalid_input",
        json={"doc_id": "a/b", "text": NEW_TEXT},
    ),
    bad("add empty text", "POST", "/v1/documents", 422, "invalid_input", json={"doc_id": "x", "text": "   "}),
    bad("add no text", "POST", "/v1/documents", 422, "invalid_request", json={"doc_id": "x"}),
    bad(
        "add bad date",
        "POST",
        "/v1/documents",
        422,
        "invalid_request",
        json={"doc_id": "x", "text": NEW_TEXT, "date": "5 March"},
    ),
    bad(
        "add unknown field",
        "POST",
        "/v1/documents",
        422,
        "invalid_request",
        json={"doc_id": "x", "text": NEW_TEXT, "lang": "zh"},
    ),
    bad("add invalid json", "POST", "/v1/documents", 400, "invalid_json", content=b"{", headers=JSON),
    bad(
        "add invalid utf-8",
        "POST",
        "/v1/documents",
        400,
        "invalid_json",
        content=b'{"doc_id": "x", "text": "\xff"}',
        headers=JSON,
    ),
    bad(
        "add text/plain",
        "POST",
        "/v1/documents",
        415,
        "unsupported_media_type",
        content=NEW_TEXT.encode(),
        headers={"content-type": "text/plain"},
    ),
    bad("add no content type", "POST", "/v1/documents", 415, "unsupported_media_type", content=b"{}"),
    bad(
        "upload wrong extension",
        "POST",
        "/v1/documents",
        422,
        "invalid_input",
        files={"file": ("a.pdf", b"%PDF-1.4")},
    ),
    bad(
        "upload no extension",
        "POST",
        "/v1/documents",
        422,
        "invalid_input",
        files={"file": ("notes", NEW_TEXT.encode())},
    ),
    bad(
        "upload not utf-8",
        "POST",
        "/v1/documents",
        422,
        "invalid_document",
        files={"file": ("a.txt", "越南".encode("gbk"))},
    ),
    bad(
        "upload binary",
        "POST",
        "/v1/documents",
        422,
        "invalid_document",
        files={"file": ("a.txt", b"\x00\x01\x02abc")},
    ),
    bad("upload empty", "POST", "/v1/documents", 422, "invalid_input", files={"file": ("a.txt", b"")}),
    bad(
        "upload traversal name",
        "POST",
        "/v1/documents",
        422,
        "invalid_input",
        files={"file": ("../../x.txt", NEW_TEXT.encode())},
        data={"doc_id": "../x"},
    ),
    bad(
        "upload no file field",
        "POST",
        "/v1/documents",
        422,
        "invalid_request",
        data={"doc_id": "x"},
        files={"other": ("a.txt", b"x")},
    ),
    bad(
        "upload file as text",
        "POST",
        "/v1/documents",
        422,
        "invalid_request",
        files={"file": (None, "not a file")},
    ),
    bad(
        "upload too large",
        "POST",
        "/v1/documents",
        413,
        "payload_too_large",
        files={"file": ("big.txt", b"a" * 1100000)},
    ),
    bad(
        "broken multipart",
        "POST",
        "/v1/documents",
        None,
        None,
        content=b"--x\r\nnonsense",
        headers={"content-type": "multipart/form-data; boundary=x"},
    ),
    bad(
        "add deeply nested JSON",
        "POST",
        "/v1/documents",
        400,
        "invalid_json",
        content=nested(10_000),
        headers=JSON,
    ),
    bad(
        "add absolute id",
        "POST",
        "/v1/documents",
        422,
        "invalid_input",
        json={"doc_id": "/etc/passwd", "text": NEW_TEXT},
    ),
    bad(
        "add backslash id",
        "POST",
        "/v1/documents",
        422,
        "invalid_input",
        json={"doc_id": "..\\secret", "text": NEW_TEXT},
    ),
    bad(
        "add drive id",
        "POST",
        "/v1/documents",
        422,
        "invalid_input",
        json={"doc_id": "C:\\secret", "text": NEW_TEXT},
    ),
    bad(
        "add NUL id",
        "POST",
        "/v1/documents",
        422,
        "invalid_input",
        json={"doc_id": "secret\u0000.txt", "text": NEW_TEXT},
    ),
    bad(
        "add newline id",
        "POST",
        "/v1/documents",
        422,
        "invalid_input",
        json={"doc_id": "secret\n", "text": NEW_TEXT},
    ),
    bad("add dot id", "POST", "/v1/documents", 422, "invalid_input", json={"doc_id": ".", "text": NEW_TEXT}),
    bad(
        "add id too long",
        "POST",
        "/v1/documents",
        422,
        "invalid_request",
        json={"doc_id": "a" * 201, "text": NEW_TEXT},
    ),
    bad("JSON to the upload route", "POST", "/v1/documents", 422, "invalid_request", json={"file": NEW_TEXT}),
    bad(
        "multipart type, JSON body",
        "POST",
        "/v1/documents",
        400,
        None,
        content=b'{"doc_id": "x", "text": "y"}',
        headers={"content-type": "multipart/form-data; boundary=zz"},
    ),
    bad(
        "multipart without boundary",
        "POST",
        "/v1/documents",
        400,
        None,
        content=b"abc",
        headers={"content-type": "multipart/form-data"},
    ),
    bad(
        "form-urlencoded document",
        "POST",
        "/v1/documents",
        415,
        "unsupported_media_type",
        data={"doc_id": "x", "text": NEW_TEXT},
    ),
    # path traversal in doc_id (request targets are sent as written)
    bad("raw ../etc/passwd", "GET", "/v1/documents/../etc/passwd", 404, "not_found"),
    bad("raw ../secret", "GET", "/v1/documents/../secret", 404, "not_found"),
    bad("raw delete ../secret", "DELETE", "/v1/documents/../secret", 404, "not_found"),
    bad("raw dot-dot id", "GET", "/v1/documents/..", 422, "invalid_input"),
    bad("raw dot id", "DELETE", "/v1/documents/.", 422, "invalid_input"),
    bad("encoded dot-dot id", "GET", "/v1/documents/%2e%2e", 422, "invalid_input"),
    bad("encoded ..%2F..%2Fx", "GET", "/v1/documents/..%2F..%2Fx", 404, "not_found"),
    bad("encoded ..%2Fsecret delete", "DELETE", "/v1/documents/..%2Fsecret", 404, "not_found"),
    bad("encoded %2e%2e%2Fsecret", "GET", "/v1/documents/%2e%2e%2Fsecret", 404, "not_found"),
    bad("NUL id", "GET", "/v1/documents/%00", 422, "invalid_input"),
    bad("NUL inside id", "DELETE", "/v1/documents/secret%00.txt", 422, "invalid_input"),
    bad("newline id", "GET", "/v1/documents/000_a2194725df4ab5f6%0A", 422, "invalid_input"),
    bad("absolute path id", "GET", "/v1/documents/%2Fetc%2Fpasswd", 404, "not_found"),
    bad("backslash traversal id", "GET", "/v1/documents/..%5C..%5Csecret", 422, "invalid_input"),
    bad("drive path id", "DELETE", "/v1/documents/C:%5Csecret", 422, "invalid_input"),
    bad("file name as id", "GET", "/v1/documents/000_a2194725df4ab5f6.txt", 404, "not_found"),
    # the static files
    bad("static raw traversal", "GET", "/static/../../config.toml", 404, "not_found"),
    bad("static encoded traversal", "GET", "/static/..%2F..%2Fconfig.toml", 404, "not_found"),
    bad("static dot-dot segments", "GET", "/static/%2e%2e/%2e%2e/config.toml", 404, "not_found"),
    bad("static absolute", "GET", "/static/%2Fetc%2Fpasswd", 404, "not_found"),
    # uploads: only the base name of a file name counts, and it must be a valid doc_id
    upload("upload ../../evil.txt", "../../evil.txt", 201, stores="evil.txt"),
    upload("upload /etc/passwd", "/etc/passwd", 422, "invalid_input"),
    upload("upload /etc/passwd.txt", "/etc/passwd.txt", 201, stores="passwd.txt"),
    upload("upload ..\\x.txt", "..\\x.txt", 422, "invalid_input"),
    upload("upload .hidden.txt", ".hidden.txt", 422, "invalid_input"),
    upload("upload NUL name", "evil\u0000.txt", 422, "invalid_input"),
    upload("upload newline name", "evil\n.txt", None),
    bad(
        "upload raw windows path",
        "POST",
        "/v1/documents",
        201,
        **multipart("C:\\Windows\\evil.txt", NEW_TEXT.encode()),
        stores="evil.txt",
    ),
    bad(
        "upload raw ..\\..\\ name",
        "POST",
        "/v1/documents",
        422,
        "invalid_input",
        **multipart("..\\..\\evil.txt", NEW_TEXT.encode()),
    ),
    bad(
        "upload doc_id traversal",
        "POST",
        "/v1/documents",
        422,
        "invalid_input",
        files={"file": ("a.txt", NEW_TEXT.encode())},
        data={"doc_id": "../secret"},
    ),
    bad(
        "upload .txt disguised binary",
        "POST",
        "/v1/documents",
        422,
        "invalid_document",
        files={"file": ("evil.txt", b"\x7fELF\x02\x01\x01\x00\x00")},
    ),
    bad(
        "upload two files",
        "POST",
        "/v1/documents",
        None,
        None,
        files=[("file", ("a.txt", NEW_TEXT.encode())), ("file", ("b.txt", NEW_TEXT.encode()))],
    ),
]


@dataclass
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class InProcess:
    """The app through TestClient; raw targets through a bare ASGI call (no client to rewrite them)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.client = TestClient(app, raise_server_exceptions=True)

    def __enter__(self) -> InProcess:
        self.client.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.__exit__(*exc)

    def send(self, case: Bad) -> Reply:
        if case.raw:
            return anyio.run(self._raw, case)
        response = self.client.request(case.method, case.path, **case.kwargs)
        return Reply(response.status_code, response.content)

    async def _raw(self, case: Bad) -> Reply:
        path, _, query = case.path.partition("?")
        headers = [(b"host", b"testserver")]
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in case.raw_headers.items()]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": case.method,
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "state": {},
        }
        status, chunks = 0, []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": case.raw_body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return Reply(status, b"".join(chunks))


class Live:
    """The app served by uvicorn in a thread on 127.0.0.1: httpx, or http.client for raw targets."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = 0

    def __enter__(self) -> Live:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(15)

    def send(self, case: Bad) -> Reply:
        if case.raw:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                connection.request(case.method, case.path, body=case.raw_body, headers=case.raw_headers)
                response = connection.getresponse()
                return Reply(response.status, response.read())
            finally:
                connection.close()
        reply = self.client.request(case.method, case.path, **case.kwargs)
        return Reply(reply.status_code, reply.content)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` but the index (which changes when an article is added): size, mtime."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] != "index"
    }


@dataclass
class Target:
    transport: InProcess | Live
    root: Path
    corpus: Path


@pytest.fixture(scope="module", params=["in-process", pytest.param("live", marks=pytest.mark.server)])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("bad-input")
    settings = settings_in(root)
    # canaries where a traversal out of the corpus would land
    (root / "secret.txt").write_text(f"{CANARY}\n\n越南与中国的贸易额是多少。\n", encoding="utf-8")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text(f"root:{CANARY}\n", encoding="utf-8")
    (root / "config.toml").write_text(f"# {CANARY}\n", encoding="utf-8")
    engine = Engine(settings).open(sync=True, show_progress=False)
    app = create_app(settings, engine)
    transport = InProcess(app) if request.param == "in-process" else Live(app)
    with transport:
        yield Target(transport, root, settings.corpus_dir)


@pytest.mark.parametrize("case", CASES)
def test_bad_input(target: Target, case: Bad) -> None:
    before = snapshot(target.root)
    reply = target.transport.send(case)

    if case.status is None:  # only "a clear 4xx, never a 5xx"
        assert 400 <= reply.status < 500, (reply.status, reply.body[:500])
    else:
        assert reply.status == case.status, (reply.status, reply.body[:500])
    if reply.status >= 400:
        body = reply.json()
        assert set(body) == {"error"}, body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        if case.code is not None:
            assert body["error"]["code"] == case.code, body
    assert CANARY.encode() not in reply.body

    after = snapshot(target.root)
    created = {name: after[name] for name in after.keys() - before.keys()}
    changed = {name for name in before.keys() & after.keys() if before[name] != after[name]}
    removed = before.keys() - after.keys()
    allowed = {f"corpus/{case.stores}"} if case.stores and reply.status == 201 else set()
    assert set(created) <= allowed and not changed and not removed, (created, changed, removed)
    if allowed and created:  # stored inside the corpus under its base name: take it out again
        doc_id = reply.json()["doc_id"]
        assert f"corpus/{doc_id}.txt" in created
        assert target.transport.send(Bad("", "DELETE", f"/v1/documents/{doc_id}", 204, None)).status == 204
        assert snapshot(target.root) == before
    assert target.transport.send(Bad("", "GET", "/readyz", 200, None)).status == 200
