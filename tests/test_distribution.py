"""One namespaced distribution: the repository's embeddings/ folder is the package qa.embeddings
(qa/embeddings links to it), so installing zh-news-qa never shadows, or is shadowed by, the PyPI package
named `embeddings`."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def test_qa_embeddings_is_the_embeddings_folder() -> None:
    import qa.embeddings.models

    assert Path(qa.embeddings.models.__file__).resolve() == (ROOT / "embeddings" / "models.py").resolve()
    assert (ROOT / "qa" / "embeddings").resolve() == (ROOT / "embeddings").resolve()


def test_no_code_imports_the_top_level_embeddings_name() -> None:
    """Under both names the classes would be two different classes (isinstance breaks), and the wheel
    has no top-level `embeddings`."""
    wrong = []
    folders = ("qa", "embeddings", "tests", "benchmarks")
    files = [p for f in folders for p in (ROOT / f).rglob("*.py") if "qa/embeddings" not in p.as_posix()]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            wrong += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "embeddings"]
    assert not wrong, wrong


def test_the_wheel_has_one_top_level_package(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: building in place would leave build/ in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("qa", "embeddings"):
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / folder, source / folder, symlinks=True, ignore=ignore)
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    out = tmp_path / "wheel"
    subprocess.run([*build, "-w", str(out), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("zh_news_qa-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"qa"}
    assert "qa/embeddings/models.py" in names and "qa/embeddings/quantize.py" in names
    assert "qa/data/ranker.json" in names and "qa/static/app.js" in names
