"""The reference the service's BM25 (``qa.text.segment_bm25``) is checked against: bm25s over the same
tokens, one index over every row, as the service used before its index had segments."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np
import numpy.typing as npt

from qa.embeddings.npyio import NPY_LOCK
from qa.text.segment_bm25 import EMPTY_DOC

log = logging.getLogger(__name__)


class LexicalIndex:
    """Row i of the index is passage i; ``search`` returns (row, score) pairs, best first."""

    def __init__(self, retriever: bm25s.BM25 | None, size: int) -> None:
        self._retriever = retriever
        self.size = size

    @classmethod
    def build(cls, token_lists: Sequence[Sequence[str]]) -> LexicalIndex:
        if not token_lists:
            return cls(None, 0)
        # bm25s.index() mutates the lists it is given: hand it copies.
        corpus = [list(tokens) or [EMPTY_DOC] for tokens in token_lists]
        retriever = bm25s.BM25()
        retriever.index(corpus, show_progress=False)
        return cls(retriever, len(corpus))

    def vocabulary(self) -> list[str]:
        return [] if self._retriever is None else [t for t in self._retriever.vocab_dict if t != EMPTY_DOC]

    def knows(self, token: str) -> bool:
        return self._retriever is not None and token in self._retriever.vocab_dict

    def scores(self, tokens: Sequence[str]) -> npt.NDArray[np.float32]:
        """BM25 score of every passage; all zeros when no token of the query is in the vocabulary."""
        if self._retriever is None:
            return np.zeros(0, dtype=np.float32)
        known = [t for t in tokens if t in self._retriever.vocab_dict and t != EMPTY_DOC]
        if not known:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._retriever.get_scores(known), dtype=np.float32)

    def search(
        self, tokens: Sequence[str], k: int, allowed: npt.NDArray[np.bool_] | None = None
    ) -> list[tuple[int, float]]:
        scores = self.scores(tokens)
        if scores.size == 0:
            return []
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        k = min(k, scores.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self._retriever is not None:
            self._retriever.save(str(directory))

    @classmethod
    def load(cls, directory: Path, size: int, *, mmap: bool = True) -> LexicalIndex:
        if size == 0:
            return cls(None, 0)
        with NPY_LOCK:  # bm25s parses .npy headers too
            retriever = bm25s.BM25.load(str(directory), mmap=mmap)
        return cls(retriever, size)
