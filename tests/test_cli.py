"""The qa command end to end (fake encoder through a config file in a temporary folder)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CONFIG, fake_config_text, run_qa, seed_text


@pytest.fixture
def config(tmp_path: Path, corpus_dir: Path) -> Path:
    text = fake_config_text(tmp_path, corpus_dir)
    text = re.sub(r'(?m)^abstention = "learned"', 'abstention = "rules"', text, count=1)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_ask_json_builds_on_first_use_and_cites_exactly(config: Path) -> None:
    result = run_qa(config, "ask", "胡志明市与中国多少个地方保持友好合作关系?", "--json", "--top-k", "3")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["answerable"] is True and len(answer["passages"]) == 3
    for p in answer["passages"]:
        assert seed_text(p["doc_id"])[p["start"] : p["end"]] == p["text"]
        assert {"score", "title", "date", "section"} <= set(p)
    assert "[1]" in answer["answer"]


def test_ask_prints_rank_title_date_and_span(config: Path) -> None:
    result = run_qa(
        config, "ask", "2023年广东和越南的进出口总额是多少?", "--history", "河内代表团访问了哪里?"
    )
    assert result.returncode == 0, result.stderr
    assert "[1]" in result.stdout and "越南河内高级代表团对中国广东省进行访问" in result.stdout
    assert "003_de8d194c5a4a5bf1:" in result.stdout


def test_ask_abstains_plainly(config: Path) -> None:
    result = run_qa(config, "ask", "越南与日本的贸易额是多少?", "--json")
    answer = json.loads(result.stdout)
    assert answer["answerable"] is False and answer["passages"] == [] and answer["reason"]


def test_ingest_dry_run_lists_articles(config: Path) -> None:
    result = run_qa(config, "ingest", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "5 articles" in result.stdout
    assert "2025-01-21" in result.stdout


def test_index_reports_incremental_work(config: Path, corpus_dir: Path) -> None:
    first = run_qa(config, "index", "--no-progress")
    assert "5 added" in first.stdout, first.stderr
    (corpus_dir / "broken.txt").write_bytes(b"\xff\xfe\x00bad")
    second = run_qa(config, "index", "--no-progress")
    assert "0 passages embedded" in second.stdout and "5 unchanged" in second.stdout
    assert "broken.txt" in second.stderr and "binary" in second.stderr


def test_eval_reports_by_kind(config: Path, tmp_path: Path) -> None:
    records = [
        {
            "id": "a",
            "question": "广西壮族自治区党委书记是谁?",
            "answers": ["刘宁"],
            "doc": "002_714598442bb43c6e",
            "kind": "factoid",
        },
        {
            "id": "b",
            "question": "越南与日本的贸易额是多少?",
            "answers": [],
            "doc": None,
            "kind": "unanswerable",
        },
    ]
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    out = tmp_path / "rows.json"
    result = run_qa(config, "eval", str(path), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "factoid" in result.stdout and "unanswerable" in result.stdout
    summary = json.loads(out.read_text(encoding="utf-8"))["summary"]
    assert summary["by_kind"]["unanswerable"]["abstention_accuracy"] == 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", "   "], "empty"),
        (["ask", "问题", "--top-k", "0"], "top_k"),
        (["ask", "问题", "--date-from", "2025-13-01"], "--date-from"),
    ],
)
def test_bad_input_is_a_clear_error(config: Path, args: list[str], message: str) -> None:
    result = run_qa(config, *args)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_an_error_of_the_embeddings_layer_is_a_clear_error(config: Path) -> None:
    """ModelError comes from embeddings/, not from qa.errors' QAError: the CLI still translates it."""
    text = config.read_text(encoding="utf-8").replace('name = "fake:64"', 'name = "no-such-model"', 1)
    config.write_text(text.replace('precision = "auto"', 'precision = "int8"', 1), encoding="utf-8")
    result = run_qa(config, "ask", "问题")
    assert result.returncode == 1, result.stderr
    assert "int8 needs a local model folder" in result.stderr and "Traceback" not in result.stderr


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        CONFIG.read_text(encoding="utf-8").replace("port = 8000", "port = -1", 1), encoding="utf-8"
    )
    result = run_qa(bad, "ask", "问题")
    assert result.returncode == 2
    assert "server.port" in result.stderr


def test_chat_keeps_the_conversation(config: Path) -> None:
    command = [sys.executable, "-c", "from qa.cli import main; main()", "--config", str(config), "chat"]
    turns = "胡志明市和上海举行了什么会议?\n双方打算重点关注哪些合作领域?\n   \n问题\n"
    result = subprocess.run(command, input=turns, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    second = result.stdout.split("问>")[2]  # the answer to the follow-up
    assert "金融中心、智慧城市和改革创新" in second
    assert "促进胡志明市与中国上海市之间的合作" in second  # the article of the first question
    assert result.stdout.count("问>") == 3  # the blank line ended the chat; "问题" was never asked
