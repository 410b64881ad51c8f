"""Typed errors raised by the library; the edges (HTTP, CLI, bot) translate them into messages.

The encoder and vector-store layer below (``embeddings``) has errors of its own, re-exported here. They
are not subclasses of ``QAError`` (that layer imports nothing from ``qa``), so an edge catches
``LIBRARY_ERRORS``, both trees, never ``QAError`` alone.
"""

from __future__ import annotations

from pathlib import Path

from qa.embeddings.errors import EmbeddingsError, ModelError, VectorStoreError

__all__ = [
    "LIBRARY_ERRORS",
    "BotStateError",
    "ConfigError",
    "CorpusError",
    "DocumentNotFoundError",
    "EmbeddingsError",
    "FetchError",
    "GenerationUnavailableError",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexStoreError",
    "ListenError",
    "ModelError",
    "QAError",
    "QuestionError",
    "TelegramUnavailableError",
    "UpstreamError",
    "VectorStoreError",
    "WebhookURLError",
    "public_message",
]


class QAError(Exception):
    """Base class of every error this package raises on purpose.

    The message is for the operator (it may name files and folders). ``public``, when set, is what a
    client of a service may be told instead: it names no path or other detail of the machine.
    """

    public: str | None = None


def public_message(exc: BaseException) -> str:
    """What a client may be told of ``exc``: the error's own message when it is safe, else its class's
    public wording; never a file-system path."""
    if isinstance(exc, LIBRARY_ERRORS):
        return exc.public or str(exc) or type(exc).__name__
    return "unexpected error; the details are in the server log"


class ConfigError(QAError):
    """The configuration file or an environment override is invalid."""

    public = "the service is misconfigured; the details are in the server log"


class CorpusError(QAError):
    """One source file could not be read as articles."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class IndexStoreError(QAError):
    """The index on disk is missing, damaged or built with other settings."""

    public = "the index is not available; the details are in the server log"


class IndexMismatchError(IndexStoreError):
    """The index was built with another model or chunking than the configuration asks for."""

    public = "the index was built with other settings than the service's; an operator must run `qa index`"


class IndexFormatError(IndexStoreError):
    """The index was written by a version of this service that lays its files out differently."""

    public = "the index was written by another version of the service; an operator must run `qa index`"


class CorpusStaleError(IndexStoreError):
    """Articles a build was told are stored unchanged are not (another writer published in between)."""

    public = "the index changed during the update; try again"


class IndexCorruptError(IndexStoreError):
    """A file of the index does not match the checksum in its manifest."""

    public = "the index on disk is damaged; an operator must run `qa index --rebuild`"


class QuestionError(QAError):
    """The question cannot be asked as given (empty, too long, bad parameters)."""


class TelegramUnavailableError(ConfigError):
    """The Telegram bot is enabled or used but python-telegram-bot (the ``telegram`` extra) is missing."""


class BotStateError(QAError):
    """The bot's shared state file (``<index.dir>/telegram.sqlite3``) cannot be opened, read or written."""

    public = "the bot's state is not available; the details are in the server log"


class WebhookURLError(QAError):
    """A URL Telegram cannot deliver updates to (not https, a port Telegram does not use, ...)."""


class ListenError(QAError):
    """``qa serve`` cannot listen on its address: another program listens there, or the address is not
    this machine's, or the port needs rights this process lacks."""


class DocumentNotFoundError(QAError):
    """No article with that doc_id is in the corpus."""

    def __init__(self, doc_id: str) -> None:
        self.doc_id = doc_id
        super().__init__(f"no article with doc_id {doc_id!r}")


class GenerationUnavailableError(ConfigError):
    """``generation.backend = "openai"`` but the ``openai`` package is not installed."""


class UpstreamError(QAError):
    """The language model's server failed (timeout, refused connection, 5xx, malformed reply); the
    written answer falls back to the extractive one, so this never reaches a user."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind  # timeout | connection | status_<code> | malformed | internal (a fault of ours)
        super().__init__(f"{kind}: {detail}")


class FetchError(QAError):
    """A web page or feed could not be fetched or read as one (refused address, timeout, too large, not
    HTML, HTTP error, redirect loop, robots.txt). Names the URL, never a path of this machine."""

    def __init__(self, url: str, reason: str, status: int | None = None, *, transient: bool = False) -> None:
        self.url = url
        self.reason = reason
        self.status = status  # the HTTP status, when the server answered with an error
        self.transient = transient  # may pass if tried again later (timeout, connection, 5xx, 429)
        super().__init__(f"{url}: {reason}")


LIBRARY_ERRORS: tuple[type[QAError] | type[EmbeddingsError], ...] = (QAError, EmbeddingsError)
"""Every error the library raises on purpose, in both trees: what an edge catches and translates."""
