"""The Encoder protocol, the sentence-transformers encoder, and a deterministic fake for fast tests."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from qa.embeddings.offline import hub_offline, keep_local

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]
FP32 = "fp32"


@runtime_checkable
class Encoder(Protocol):
    """Turns questions and passages into L2-normalised float32 rows."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode_queries(self, texts: Sequence[str]) -> Vectors: ...

    def encode_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> Vectors: ...


def precision_of(encoder: Encoder) -> str:
    """The arithmetic an encoder runs (``fp32`` unless it says otherwise): vectors of two differ slightly."""
    return str(getattr(encoder, "precision", FP32))


def _normalise(rows: npt.NDArray[Any]) -> Vectors:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: Vectors = (rows / norms).astype(np.float32, copy=False)
    return out


class FakeEncoder:
    """Hashes character uni- and bigrams into a fixed number of buckets: deterministic, no weights.

    Texts that share characters get similar vectors, which is enough for retrieval tests to mean something.
    """

    def __init__(self, dim: int = 64) -> None:
        self._dim = dim

    @property
    def name(self) -> str:
        return f"fake:{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def _one(self, text: str) -> npt.NDArray[np.float32]:
        row = np.zeros(self._dim, dtype=np.float32)
        chars = re.sub(r"\s+", "", text.lower())
        grams = list(chars) + [chars[i : i + 2] for i in range(len(chars) - 1)]
        for gram in grams:
            digest = hashlib.sha256(gram.encode("utf-8")).digest()
            bucket = int.from_bytes(digest[:4], "little") % self._dim
            row[bucket] += 1.0 if digest[4] & 1 else -1.0
        return row

    def _encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return _normalise(np.stack([self._one(t) for t in texts]))

    def encode_queries(self, texts: Sequence[str]) -> Vectors:
        return self._encode(texts)

    def encode_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> Vectors:
        return self._encode(texts)


class SentenceTransformerEncoder:
    """Any sentence-transformers model (a hub name or a local folder), with e5-style prefixes, in fp32."""

    precision = FP32

    def __init__(
        self,
        model: str | Path,
        *,
        name: str | None = None,
        query_prefix: str = "",
        passage_prefix: str = "",
        batch_size: int = 32,
        max_seq_length: int | None = None,
    ) -> None:
        keep_local()  # before sentence-transformers imports transformers and huggingface_hub
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(model), device="cpu", local_files_only=hub_offline())
        if max_seq_length:
            self._model.max_seq_length = max_seq_length
        self._name = name or str(model)
        self._query_prefix = query_prefix
        self._passage_prefix = passage_prefix
        self._batch_size = batch_size
        dimension = getattr(self._model, "get_embedding_dimension", None)
        dim = dimension() if dimension else self._model.get_sentence_embedding_dimension()
        if not dim:
            raise ValueError(f"model {model} does not report an embedding dimension")
        self._dim = int(dim)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def _encode(self, texts: Sequence[str], prefix: str, show_progress: bool) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        rows = self._model.encode(
            [prefix + t for t in texts],
            batch_size=self._batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(rows, dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> Vectors:
        return self._encode(texts, self._query_prefix, False)

    def encode_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> Vectors:
        return self._encode(texts, self._passage_prefix, show_progress)
