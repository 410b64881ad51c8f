"""The int8 fast path: an ONNX Runtime session over the graph built by :mod:`qa.embeddings.quantize`,
and what this machine supports.

The graph already mean-pools and L2-normalises, exactly like the sentence-transformers modules, and the
tokenizer is the model folder's own, so only the arithmetic inside the transformer differs from fp32.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.embeddings.encoder import Vectors, _normalise
from qa.embeddings.errors import ModelError
from qa.embeddings.offline import import_onnxruntime
from qa.embeddings.quantize import MODEL_FILE, RECIPE

log = logging.getLogger(__name__)

# transformers' own fast tokenizer of the folder (its backend ``tokenizers.Tokenizer``, with padding and
# truncation set as the encoder calls it), saved on first load: later loads need neither transformers
# nor torch, which cost a cold start about 5 s of imports. Equal token ids and masks (checked on 1,026
# texts: seeds lines, whole articles, tests, odd whitespace, combining marks, 3,000-character texts).
RUNTIME_TOKENIZER = "tokenizer.runtime.{}.json"  # by max_seq_length (at most 512)


def _runtime_path(folder: Path, max_seq_length: int) -> Path:
    return folder / RUNTIME_TOKENIZER.format(min(max_seq_length, 512))


_X86 = {"x86_64", "amd64", "i686", "x86"}
_VNNI = {"avx512_vnni", "avx_vnni", "amx_int8"}
# Measured faster at the same quality without VNNI too: on an AVX2-only AMD EPYC (2026-12-03) int8
# encoded a question in 10.7 ms against fp32's 31.5, its passage vectors kept a mean cosine of 0.996
# with fp32's (min 0.988 over the dev index's 20,185 passages: none of the int16 saturation that AVX2's
# u8*s8 products can suffer), and the dev sets lost nothing (inews_dev 5 won, 0 lost).
_INT8_FAST = _VNNI | {"avx2"}


def cpu_flags() -> set[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (empty where there is no such file)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def missing_runtime() -> str | None:
    """Why the int8 path cannot run here at all (None when onnxruntime is importable). Building the int8
    copy needs ``onnx`` too (the ``onnx`` extra, checked by :func:`qa.embeddings.quantize.build_int8`)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    return None


def int8_unsupported(flags: set[str] | None = None, machine: str | None = None) -> str | None:
    """Why int8 would not be the fast path on this machine (None when it is: x86-64 with VNNI or AVX2)."""
    reason = missing_runtime()
    if reason:
        return reason
    machine = (machine or platform.machine()).lower()
    if machine not in _X86:
        return f"int8 speed and quality were only verified on x86-64 (this is {machine})"
    flags = cpu_flags() if flags is None else flags
    if not flags & _INT8_FAST:
        return "the CPU has neither VNNI nor AVX2, where int8 was measured faster at the same quality"
    return None


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _saved_tokenizer(folder: Path, max_seq_length: int) -> Any:
    """The backend tokenizer transformers builds for ``folder``, padding to the longest text of a batch
    and truncating at ``min(max_seq_length, model_max_length, 512)``; saved (atomically) for next time."""
    from transformers import AutoTokenizer

    slow = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    limit = min(max_seq_length, int(getattr(slow, "model_max_length", 0) or max_seq_length), 512)
    backend = slow.backend_tokenizer
    backend.enable_padding(pad_id=slow.pad_token_id, pad_token=slow.pad_token)
    backend.enable_truncation(max_length=limit)
    target = _runtime_path(folder, max_seq_length)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        backend.save(str(tmp))
        os.replace(tmp, target)
    except OSError as exc:  # a read-only model folder: the next start takes the slow path again
        log.debug("cannot save the runtime tokenizer in %s: %s", folder, exc)
        tmp.unlink(missing_ok=True)
    return backend


def runtime_tokenizer(folder: Path, max_seq_length: int) -> Any:
    """A ``tokenizers.Tokenizer`` equal to transformers' for ``folder`` (see :data:`RUNTIME_TOKENIZER`)."""
    from tokenizers import Tokenizer

    saved = _runtime_path(folder, max_seq_length)
    if saved.is_file():
        try:
            return Tokenizer.from_file(str(saved))
        except Exception as exc:  # damaged: made again below
            log.debug("making %s again: %s", saved, exc)
    return _saved_tokenizer(folder, max_seq_length)


class OnnxEncoder:
    """Encodes with the int8 ONNX model; same prefixes, pooling and normalisation as the fp32 encoder."""

    precision = RECIPE

    def __init__(
        self,
        folder: str | Path,
        *,
        name: str,
        query_prefix: str = "",
        passage_prefix: str = "",
        batch_size: int = 32,
        max_seq_length: int = 512,
        threads: int = 0,
    ) -> None:
        try:
            ort = import_onnxruntime()  # telemetry off before the native library starts
        except ImportError as exc:
            raise ModelError(f"the int8 encoder needs onnxruntime ({exc}); pip install onnxruntime") from exc
        folder = Path(folder)
        self._tokenizer = runtime_tokenizer(folder, max_seq_length)
        self._tokenizer_lock = threading.Lock()  # fast tokenizers are not safe to call from two threads
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        # Spinning threads lose badly when other processes share the cores; idle threads sleep instead.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load {folder / MODEL_FILE}: {exc}") from exc
        self._dim = int(self._session.get_outputs()[0].shape[-1])
        self._name = name
        self._query_prefix = query_prefix
        self._passage_prefix = passage_prefix
        self._batch_size = batch_size

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def _batch(self, texts: list[str]) -> Any:
        with self._tokenizer_lock:
            encodings = self._tokenizer.encode_batch(texts)
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
        return self._session.run(None, feed)[0]

    def _encode(self, texts: Sequence[str], prefix: str, show_progress: bool) -> Vectors:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        if not texts:
            return out
        # Longest first, like sentence-transformers: batches of similar length waste little on padding.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        from tqdm import tqdm

        with tqdm(total=len(texts), desc="encoding", unit="text", disable=not show_progress) as bar:
            for start in range(0, len(texts), self._batch_size):
                rows = order[start : start + self._batch_size]
                out[rows] = self._batch([prefix + texts[i] for i in rows])
                bar.update(len(rows))
        return _normalise(out)

    def encode_queries(self, texts: Sequence[str]) -> Vectors:
        return self._encode(texts, self._query_prefix, False)

    def encode_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> Vectors:
        return self._encode(texts, self._passage_prefix, show_progress)
