"""Embeddings of each article's passages, kept across builds under the article's content hash.

Written as soon as a batch is embedded, so a build that is killed (or a server stopped while it builds
its first index) resumes where it stopped instead of embedding everything again. Entries live under a
folder named after the model and chunking key, so vectors of another model are never reused; entries of
articles no longer indexed are pruned after each successful publish: a build prunes every entry no live
article has, a write (``add_document``, ``delete_document``) only those of the articles it replaced or
removed, so that it costs its articles and not the cache's folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from qa.embeddings.encoder import Vectors
from qa.embeddings.npyio import load_npy

CACHE_DIR = "embedding-cache"


class EmbeddingCache:
    def __init__(self, index_dir: Path, dense_key: dict[str, Any], dim: int) -> None:
        key = hashlib.sha256(json.dumps(dense_key, sort_keys=True).encode()).hexdigest()[:16]
        self.root = index_dir / CACHE_DIR
        self.dir = self.root / key
        self.dim = dim

    def _path(self, digest: str) -> Path:
        return self.dir / f"{digest}.npy"

    def get(self, digest: str, rows: int) -> Vectors | None:
        """The article's vectors, or None when missing, unreadable or of the wrong shape."""
        try:
            vectors: Vectors = load_npy(self._path(digest))
        except (OSError, ValueError):
            return None
        if vectors.shape != (rows, self.dim) or vectors.dtype != np.float32:
            return None
        return vectors

    def put(self, digest: str, vectors: Vectors) -> None:
        """Best effort: a torn file is rejected by ``get`` and the article embedded again."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{digest}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
        os.replace(tmp, self._path(digest))

    def drop(self, digests: Iterable[str]) -> None:
        """Drop the entries of ``digests`` (a write's replaced and removed articles no live one shares)."""
        for digest in digests:
            self._path(digest).unlink(missing_ok=True)

    def prune(self, keep: set[str]) -> None:
        """Drop entries of articles not in ``keep`` and every other model's folder."""
        if self.root.is_dir():
            for other in self.root.iterdir():
                if other != self.dir:
                    shutil.rmtree(other, ignore_errors=True)
        if self.dir.is_dir():
            for path in self.dir.iterdir():
                if path.suffix == ".tmp" or path.stem not in keep:
                    path.unlink(missing_ok=True)
