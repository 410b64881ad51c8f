"""Typed errors raised by the library; the edges (HTTP, CLI, bot) translate them into messages."""

from __future__ import annotations

from pathlib import Path


class QAError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(QAError):
    """The configuration file or an environment override is invalid."""


class CorpusError(QAError):
    """One source file could not be read as articles."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelError(QAError):
    """The embedding model could not be built or loaded."""


class IndexStoreError(QAError):
    """The index on disk is missing, damaged or built with other settings."""


class IndexMismatchError(IndexStoreError):
    """The index was built with another model or chunking than the configuration asks for."""


class IndexCorruptError(IndexStoreError):
    """A file of the index does not match the checksum in its manifest."""


class QuestionError(QAError):
    """The question cannot be asked as given (empty, too long, bad parameters)."""


class DocumentNotFoundError(QAError):
    """No article with that doc_id is in the corpus."""

    def __init__(self, doc_id: str) -> None:
        self.doc_id = doc_id
        super().__init__(f"no article with doc_id {doc_id!r}")
