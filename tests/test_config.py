from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from qa.config import VectorStoreSettings, load_settings
from qa.errors import ConfigError
from tests.conftest import CONFIG, ROOT


def write_config(tmp_path: Path, replace: tuple[str, str] | None = None, extra: str = "") -> Path:
    text = CONFIG.read_text(encoding="utf-8")
    if replace:
        assert replace[0] in text
        text = text.replace(*replace, 1)
    path = tmp_path / "config.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


def test_defaults_load_and_paths_are_relative_to_the_config_file() -> None:
    s = load_settings(CONFIG)
    assert s.corpus_dir == ROOT / "seeds"
    assert s.server.host == "127.0.0.1"
    assert s.retrieval.top_k == 5
    assert ("范明政", "范明正", "范明真") in s.aliases.groups


def test_vector_store_defaults_agree_with_config_toml() -> None:
    """A config file that leaves a [vector_store] key out gets what config.toml says, and so does a store
    built without settings (StoreParams())."""
    from qa.embeddings.vector_store import StoreParams

    shipped = tomllib.loads(CONFIG.read_text(encoding="utf-8"))["vector_store"]
    defaults = VectorStoreSettings(backend=shipped["backend"])
    assert {key: getattr(defaults, key) for key in shipped} == shipped
    assert defaults.store_params() == StoreParams()


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QA_SERVER__PORT", "9123")
    monkeypatch.setenv("QA_RETRIEVAL__TOP_K", "7")
    s = load_settings(CONFIG)
    assert s.server.port == 9123
    assert s.retrieval.top_k == 7
    assert s.server.host == "127.0.0.1"  # the rest of the section is kept


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, ("port = 8000", "port = 8111"))
    monkeypatch.setenv("QA_CONFIG", str(path))
    assert load_settings().server.port == 8111


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, ("[server]\n", "[server]\nbogus_key = 1\n"))
    with pytest.raises(ConfigError, match=r"unknown key 'server\.bogus_key'"):
        load_settings(path)


def test_unknown_section_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra="\n[nonsense]\nx = 1\n")
    with pytest.raises(ConfigError, match="unknown key 'nonsense'"):
        load_settings(path)


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (("port = 8000", "port = 70000"), "server.port"),
        (("port = 8000", 'port = "eighty"'), "server.port"),
        (("max_chars = 160", "max_chars = 10"), "chunking.max_chars"),
        (("overlap_chars = 40", "overlap_chars = 500"), "overlap_chars must be smaller"),
        (("top_k = 5", "top_k = 0"), "retrieval.top_k"),
        (('["何炜", "何巍"],', '["何炜"],'), "two or more"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, replace: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write_config(tmp_path, replace))


def test_bad_environment_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QA_SERVER__PORT", "abc")
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_settings(CONFIG)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nport = 1", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)


def test_telegram_needs_a_secret_when_enabled() -> None:
    with pytest.raises(ConfigError, match="secret_token"):
        load_settings(CONFIG, telegram={"enabled": True, "secret_token": ""})
