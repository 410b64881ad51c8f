"""Typed errors raised by the library; the edges (HTTP, CLI, bot) translate them into messages."""

from __future__ import annotations

from pathlib import Path


class QAError(Exception):
    """Base class of every error this package raises on purpose.

    The message is for the operator (it may name files and folders). ``public``, when set, is what a
    client of a service may be told instead: it names no path or other detail of the machine.
    """

    public: str | None = None


def public_message(exc: BaseException) -> str:
    """What a client may be told of ``exc``: the error's own message when it is safe, else its class's
    public wording; never a file-system path."""
    if isinstance(exc, QAError):
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


class ModelError(QAError):
    """The embedding model could not be built or loaded."""

    public = "the embedding model is not available; the details are in the server log"


class IndexStoreError(QAError):
    """The index on disk is missing, damaged or built with other settings."""

    public = "the index is not available; the details are in the server log"


class IndexMismatchError(IndexStoreError):
    """The index was built with another model or chunking than the configuration asks for."""

    public = "the index was built with other settings than the service's; an operator must run `qa index`"


class IndexCorruptError(IndexStoreError):
    """A file of the index does not match the checksum in its manifest."""

    public = "the index on disk is damaged; an operator must run `qa index --rebuild`"


class QuestionError(QAError):
    """The question cannot be asked as given (empty, too long, bad parameters)."""


class DocumentNotFoundError(QAError):
    """No article with that doc_id is in the corpus."""

    def __init__(self, doc_id: str) -> None:
        self.doc_id = doc_id
        super().__init__(f"no article with doc_id {doc_id!r}")
