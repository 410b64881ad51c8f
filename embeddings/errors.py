"""Typed errors of the encoder and vector-store layer.

This package sits below the service (``qa``) and imports nothing from it; ``qa.errors`` re-exports these
classes, and the service's edges (HTTP, CLI, bot) translate them as they translate its own errors.
"""

from __future__ import annotations


class EmbeddingsError(Exception):
    """Base class of every error this package raises on purpose.

    The message is for the operator (it may name files and folders). ``public``, when set, is what a
    client of a service may be told instead: it names no path or other detail of the machine.
    """

    public: str | None = None


class ModelError(EmbeddingsError):
    """The embedding model could not be built or loaded."""

    public = "the embedding model is not available; the details are in the server log"


class BuildToolsMissing(ModelError):
    """A model build needs a package that is not installed (``onnx`` for the int8 copy: the ``onnx`` extra)."""


class VectorStoreError(EmbeddingsError):
    """A vector store (Milvus) is unreachable, or its collection does not fit what is asked of it."""

    public = "the index is not available; the details are in the server log"
