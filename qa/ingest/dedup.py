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
import io
import logging
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qa.records import Article, Section
from qa.text.normalize import fold

log = logging.getLogger(__name__)

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
    """Signatures of the stored articles' stories, one row each, computed on first need and kept per
    article version (a text digest); a new page is compared with all of them at once. ``to_bytes`` /
    ``from_bytes`` let the caller keep them on disk, so a process does not sign the corpus again."""

    def __init__(self, hasher: MinHasher, threshold: float) -> None:
        self.hasher = hasher
        self.threshold = threshold
        self._rows: dict[str, tuple[str, Signature]] = {}  # doc_id → (story digest, signature)
        self._matrix: tuple[list[str], npt.NDArray[np.uint64]] | None = None
        self._lock = threading.Lock()
        self.changed = False  # rows added or dropped since the last to_bytes / from_bytes

    def _none(self) -> Signature:
        """The row of an article with no story: equal to no real signature value (all are < 2³¹)."""
        return np.full(len(self.hasher._a), np.iinfo(np.uint64).max, dtype=np.uint64)

    def _sync(self, stored: Iterable[Article]) -> tuple[list[str], npt.NDArray[np.uint64]]:
        wanted: dict[str, Article] = {a.doc_id: a for a in stored}
        for doc_id in [d for d in self._rows if d not in wanted]:
            del self._rows[doc_id]
            self.changed, self._matrix = True, None
        for doc_id, article in wanted.items():
            story = story_text(article)
            digest = hashlib.sha256(story.encode("utf-8")).hexdigest()[:32]
            known = self._rows.get(doc_id)
            if known is None or known[0] != digest:
                signature = self.hasher.signature(story)
                self._rows[doc_id] = (digest, signature if signature is not None else self._none())
                self.changed, self._matrix = True, None
        if self._matrix is None:
            ids = list(self._rows)
            width = len(self.hasher._a)
            rows = [self._rows[d][1] for d in ids]
            self._matrix = (ids, np.stack(rows) if rows else np.empty((0, width), dtype=np.uint64))
        return self._matrix

    def find_copy(self, article: Article, stored: Iterable[Article]) -> Copy | None:
        """The stored article whose story ``article`` repeats (the most similar one at or above the
        threshold), ignoring a stored article of the same doc_id (its earlier version)."""
        mine = self.hasher.signature(story_text(article))
        if mine is None:
            return None
        with self._lock:
            ids, matrix = self._sync(stored)
        if not ids:
            return None
        scores = (matrix == mine[None, :]).mean(axis=1)
        for i in np.argsort(-scores, kind="stable"):
            if scores[i] < self.threshold:
                return None
            if ids[i] != article.doc_id:
                return Copy(ids[i], float(scores[i]))
        return None

    def to_bytes(self) -> bytes:
        with self._lock:
            ids = list(self._rows)
            digests = np.array([self._rows[d][0] for d in ids], dtype="<U32")
            width = len(self.hasher._a)
            rows = np.stack([self._rows[d][1] for d in ids]) if ids else np.empty((0, width), dtype=np.uint64)
            buffer = io.BytesIO()
            np.savez(buffer, ids=np.array(ids, dtype=str), digests=digests, rows=rows, key=self._key())
            self.changed = False
        return buffer.getvalue()

    def from_bytes(self, data: bytes) -> bool:
        """Load rows saved by ``to_bytes`` with the same hasher; False (nothing loaded) otherwise."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as saved:
                if not np.array_equal(saved["key"], self._key()):
                    return False
                ids, digests, rows = list(saved["ids"]), list(saved["digests"]), saved["rows"]
        except (OSError, ValueError, KeyError, EOFError) as exc:
            log.warning("story signatures unreadable (%s): computing them again", exc)
            return False
        with self._lock:
            self._rows = {
                str(d): (str(g), rows[i].copy()) for i, (d, g) in enumerate(zip(ids, digests, strict=True))
            }
            self._matrix, self.changed = None, False
        return True

    def _key(self) -> npt.NDArray[np.uint64]:
        """What the rows depend on: the shingle size and the hash parameters."""
        return np.concatenate([[np.uint64(self.hasher.size)], self.hasher._a, self.hasher._b])
