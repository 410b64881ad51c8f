"""Terms as they are stored: UTF-8 bytes and a stable 64-bit hash, the order of every saved vocabulary
(the BM25 postings' and the segment tables'), so that a term is found by a binary search."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import numpy.typing as npt


def encode_term(token: str) -> bytes:
    # A query may carry a lone surrogate (JSON allows it): look it up and miss rather than fail.
    return token.encode("utf-8", "surrogatepass")


def term_hash(text: bytes) -> int:
    """Stable across processes, unlike hash(): the hashes are saved."""
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def confirm(
    hashes: npt.NDArray[np.uint64], start: int, key: int, text: bytes, stored: Callable[[int], bytes]
) -> int | None:
    """The id of the term ``text`` (hash ``key``) in a vocabulary in hash order, from ``start``, where a
    binary search of ``hashes`` put ``key``: distinct terms may share a hash, so they sit side by side
    and the stored bytes (``stored(id)``) tell them apart. None when the vocabulary lacks it."""
    at = start
    while at < hashes.size and hashes[at] == key:
        if stored(at) == text:
            return at
        at += 1
    return None
