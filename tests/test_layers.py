"""The import direction of the layers: text processing below the index and retrieval, the index below
retrieval, the encoder and vector stores (embeddings/) below the whole service (qa/)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

# package → packages it must never import (a prefix matches the package and its modules)
SERVICE = ("qa.indexing", "qa.pipeline", "qa.engine", "qa.api", "qa.bot", "qa.cli")
FORBIDDEN = {
    "qa/text": ("qa.index", "qa.retrieval", *SERVICE),
    "qa/ingest": ("qa.index", "qa.retrieval", *SERVICE),
    "qa/index": ("qa.retrieval", *SERVICE),
    "qa/retrieval": SERVICE,
    "qa/indexing.py": ("qa.retrieval", "qa.pipeline", "qa.engine", "qa.api", "qa.bot", "qa.cli"),
    "qa/pipeline.py": ("qa.indexing", "qa.engine", "qa.api", "qa.bot", "qa.cli"),
    "embeddings": ("qa",),  # qa.embeddings itself excepted (ALLOWED)
}
# Imports a layer may make although they match a forbidden prefix: embeddings/ is installed as
# qa.embeddings (qa/embeddings links to it) and imports itself under that name.
ALLOWED = {"embeddings": ("qa.embeddings",)}


def imported(path: Path, package: str) -> set[str]:
    """Every module a file of ``package`` imports, at the top or inside functions (relative imports
    resolved)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def violates(name: str, forbidden: tuple[str, ...]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_layers_import_only_downwards(layer: str) -> None:
    files = [ROOT / layer] if layer.endswith(".py") else sorted((ROOT / layer).rglob("*.py"))
    assert files, layer
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in imported(path, ".".join(path.relative_to(ROOT).parts[:-1]))
        if violates(name, FORBIDDEN[layer]) and not violates(name, ALLOWED.get(layer, ()))
    }
    assert not wrong, sorted(wrong)


@pytest.mark.parametrize(
    "source", ["def f():\n    from qa.retrieval import hybrid\n", "from ..retrieval.query import Query\n"]
)
def test_the_checker_sees_a_violation(tmp_path: Path, source: str) -> None:
    module = tmp_path / "probe.py"
    module.write_text(source, encoding="utf-8")
    assert any(violates(n, FORBIDDEN["qa/index"]) for n in imported(module, "qa.index"))
