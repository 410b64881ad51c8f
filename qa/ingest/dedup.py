"""Near-duplicate stories (a wire story republished by several sites): MinHash over character shingles.

An article's *story* is its body text (its related-news teasers, navigation and captions differ from
site to site and are left out), folded (NFKC, Simplified, lower case) with spaces and punctuation
removed, cut into overlapping shingles of ``shingle_chars`` characters. Its MinHash signature has
``permutations`` values, each the minimum of one universal hash ``(a·h + b) mod (2³¹ − 1)`` over the
shingles' CRC-32s; the share of equal values estimates the Jaccard similarity of two shingle sets
(standard error ≈ 1/√permutations: 0.044 at 128). Measured against ``datasketch`` (SHA-1 shingles,
2⁶¹ − 1): benchmarks/dedup_minhash.py.
"""

from __future__ import annotations

import hashlib
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qa.records import Article, Section
from qa.text.normalize import fold

_PRIME = (1 << 31) - 1
Signature = npt.NDArray[np.uint64]


def story_text(article: Article) -> str:
    """The article's own text: its body segments, without teasers of other articles."""
    return "\n".join(article.segment_text(s) for s in article.segments if s.section is Section.BODY)


def shingles(text: str, size: int) -> set[str]:
    letters = "".join(ch for ch in fold(text) if ch.isalnum())
    if len(letters) <= size:
        return {letters} if letters else set()
    return {letters[i : i + size] for i in range(len(letters) - size + 1)}


class MinHasher:
    def __init__(self, permutations: int = 128, shingle_chars: int = 5, seed: int = 13) -> None:
        rng = np.random.default_rng(seed)
        self.size = shingle_chars
        self._a = rng.integers(1, _PRIME, size=permutations, dtype=np.uint64)
        self._b = rng.integers(0, _PRIME, size=permutations, dtype=np.uint64)

    def signature(self, text: str) -> Signature | None:
        """None for a text too short to have a story (no shingle)."""
        grams = shingles(text, self.size)
        if not grams:
            return None
        hashes = np.fromiter(
            (zlib.crc32(g.encode("utf-8")) for g in grams), dtype=np.uint64, count=len(grams)
        )
        out = np.full(len(self._a), _PRIME, dtype=np.uint64)
        for start in range(0, len(hashes), 4096):  # bounded memory: permutations × 4096 at a time
            block = hashes[start : start + 4096]
            values = (self._a[:, None] * block[None, :] + self._b[:, None]) % _PRIME
            np.minimum(out, values.min(axis=1), out=out)
        return out

    @staticmethod
    def similarity(one: Signature, other: Signature) -> float:
        return float(np.mean(one == other))


@dataclass(frozen=True)
class Copy:
    doc_id: str
    similarity: float


class StoryIndex:
    """Signatures of the stored articles' stories, computed on first need and kept per article version."""

    def __init__(self, hasher: MinHasher, threshold: float) -> None:
        self.hasher = hasher
        self.threshold = threshold
        self._cache: dict[str, tuple[str, Signature | None]] = {}  # doc_id → (text digest, signature)
        self._lock = threading.Lock()

    def _signature_of(self, article: Article) -> Signature | None:
        story = story_text(article)
        digest = hashlib.sha256(story.encode("utf-8")).hexdigest()
        with self._lock:
            cached = self._cache.get(article.doc_id)
        if cached is not None and cached[0] == digest:
            return cached[1]
        signature = self.hasher.signature(story)
        with self._lock:
            self._cache[article.doc_id] = (digest, signature)
        return signature

    def find_copy(self, article: Article, stored: Iterable[Article]) -> Copy | None:
        """The stored article whose story ``article`` repeats (the most similar one at or above the
        threshold), ignoring a stored article of the same doc_id (its earlier version)."""
        mine = self.hasher.signature(story_text(article))
        if mine is None:
            return None
        best: Copy | None = None
        for other in stored:
            if other.doc_id == article.doc_id:
                continue
            theirs = self._signature_of(other)
            if theirs is None:
                continue
            score = self.hasher.similarity(mine, theirs)
            if score >= self.threshold and (best is None or score > best.similarity):
                best = Copy(other.doc_id, score)
        return best
