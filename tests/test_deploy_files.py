"""The deployment files parse and say what the README promises (no Docker engine is usable here): the
Dockerfile is CPU-only, runs as a non-root user, builds the model at image build time and installs from
the lock file; compose.yaml runs the service against Milvus standalone with settings the service accepts."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from qa.config import load_settings
from tests.conftest import CONFIG, ROOT

INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def dockerfile(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(instruction, arguments) of each instruction, continuation lines joined, comments dropped."""
    steps: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        if word.upper() not in INSTRUCTIONS:
            raise AssertionError(f"unknown Dockerfile instruction: {line[:60]!r}")
        steps.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return steps


def test_dockerfile_parses_and_is_cpu_non_root_with_the_model_built_in() -> None:
    steps = dockerfile()
    names = [name for name, _ in steps]
    assert names[0] == "FROM" and "python:3.11" in steps[0][1]
    runs = [args for name, args in steps if name == "RUN"]
    torch = next(r for r in runs if "torch" in r)
    assert "download.pytorch.org/whl/cpu" in torch and "-c requirements.lock" in torch
    assert any("-c requirements.lock" in r and ".[onnx" in r for r in runs)
    # a non-root user before the model build and the command
    user = names.index("USER")
    assert steps[user][1] not in ("root", "0")
    model_build = next(i for i, (n, a) in enumerate(steps) if n == "RUN" and "qa model build" in a)
    assert user < model_build < names.index("CMD")
    assert json.loads(steps[names.index("CMD")][1])[:2] == ["qa", "serve"]
    assert "8000" in steps[names.index("EXPOSE")][1]
    assert "/readyz" in steps[names.index("HEALTHCHECK")][1]


def test_everything_the_dockerfile_copies_exists() -> None:
    for name, args in dockerfile():
        if name == "COPY":
            *sources, _dest = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), source


def test_dockerfile_environment_is_accepted_by_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, args in dockerfile():
        if name == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                monkeypatch.setenv(key, value)
    settings = load_settings(CONFIG)
    assert settings.server.host == "0.0.0.0" and settings.log.format == "json"


def compose() -> dict[str, object]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_compose_runs_the_service_against_milvus_standalone(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose()["services"]
    assert isinstance(services, dict)
    assert {"qa", "milvus", "etcd", "minio"} <= set(services)
    milvus = services["milvus"]
    assert milvus["command"] == ["milvus", "run", "standalone"]
    assert re.fullmatch(r"milvusdb/milvus:v2\.5\.\d+", milvus["image"])  # pymilvus 2.5 talks to 2.5
    assert milvus["environment"]["ETCD_ENDPOINTS"].startswith("etcd:")
    assert milvus["environment"]["MINIO_ADDRESS"].startswith("minio:")
    qa = services["qa"]
    assert qa["build"] == "."
    assert qa["depends_on"]["milvus"]["condition"] == "service_healthy"
    assert "8000:8000" in qa["ports"]
    # every named volume is declared
    declared = set(compose()["volumes"])  # type: ignore[arg-type]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in declared, volume
    # the service accepts its environment, and it points at the milvus service
    for key, value in qa["environment"].items():
        monkeypatch.setenv(key, str(value))
    settings = load_settings(CONFIG)
    assert settings.vector_store.backend == "milvus"
    assert settings.vector_store.uri == "http://milvus:19530"
    assert settings.server.workers == 2 and "qa" in settings.server.allowed_hosts
