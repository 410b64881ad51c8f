"""Logging of every ``qa`` command and server process: one handler on the root logger, text or JSON
lines (``[log] format``), each carrying the id of the HTTP request it was written for.

The request id lives in a context variable (:data:`REQUEST_ID`, set by
:class:`qa.api.request_id.RequestIdMiddleware`); a filter on the handler copies it into every record, so
lines from any module — and from uvicorn's own loggers, which ``qa serve`` sends here — carry it while
that request is handled (``-`` outside a request). Contexts are copied into the threads FastAPI runs
sync routes in, so lines written there carry it too.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from qa.embeddings.npyio import NPY_LOCK

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("qa_request_id", default=None)
NO_REQUEST = "-"
TEXT_FORMAT = "%(levelname)s %(name)s%(request_tag)s: %(message)s"  # tag: " [id]" within a request
# Libraries whose INFO lines are details (paths, timings of their own steps): shown with -v only.
NOISY = (
    "faiss",
    "faiss.loader",
    "jieba",
    "bm25s",
    "sentence_transformers",
    "httpx",
    "httpcore",
    "urllib3",
    "transformers",
    "onnxruntime",
    "multipart",
)
_MARK = "_qa_handler"


class RequestIdFilter(logging.Filter):
    """Puts ``record.request_id`` (the current request's id, or ``-``) and ``record.request_tag``
    (`` [id]``, or nothing outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get() or NO_REQUEST
        record.request_id = request_id
        if not hasattr(record, "request_tag"):
            record.request_tag = "" if request_id == NO_REQUEST else f" [{request_id}]"
        return True


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``; a traceback is formatted under the ``.npy`` lock: on CPython 3.11 formatting one
    parses source with ``ast`` (the ``^^^`` markers), which races numpy's header parsing in other
    threads (``SystemError: AST constructor recursion depth mismatch``, see qa.embeddings.npyio)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatException(self, ei: Any) -> str:
        with NPY_LOCK:
            return super().formatException(ei)


class JsonFormatter(TextFormatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, request_id, message[, exception]."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", NO_REQUEST),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


class _CurrentStderr(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is when a line is written, not to the one there at start: a
    test runner or an application embedding the CLI may swap it and close the old one (a handler holding
    a closed stream prints "--- Logging error ---" with a traceback on every line, and on CPython 3.11
    formatting that traceback parses source with ``ast``, racing the ``.npy`` loads of other threads)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure(
    level: str = "INFO", fmt: Literal["text", "json"] = "text", stream: TextIO | None = None
) -> logging.Handler:
    """Install (or replace) the one handler of the root logger. Idempotent: a second call (the app of a
    worker process after the CLI) replaces the first handler instead of doubling every line."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    setattr(handler, _MARK, True)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric)
    for name in NOISY:  # their details only when debugging
        logging.getLogger(name).setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()  # uvicorn's default config adds its own; ours has the request id
        uvicorn_logger.propagate = True
    return handler
