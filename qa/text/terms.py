"""Terms as they are stored: UTF-8 bytes and a stable 64-bit hash, the order of every saved vocabulary
(the BM25 postings' and the segment tables'), so that a term is found by a binary search."""

from __future__ import annotations

import hashlib


def encode_term(token: str) -> bytes:
    # A query may carry a lone surrogate (JSON allows it): look it up and miss rather than fail.
    return token.encode("utf-8", "surrogatepass")


def term_hash(text: bytes) -> int:
    """Stable across processes, unlike hash(): the hashes are saved."""
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")
