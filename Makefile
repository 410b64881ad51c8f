# Everything runs in .venv, created on first use. torch comes first, as the CPU wheel that lies on disk,
# so that pip never pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
QUESTION ?= 胡志明市与中国多少个地方保持友好合作关系?

.PHONY: install run test test-fast lint format browser bench bench-quality bench-encode bench-perf clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## Answer a question over seeds/ (builds the model and the index on first use).
run: install
	$(BIN)/qa ask "$(QUESTION)"

## The whole suite, as CI runs it: fast tests, real-model tests, real-server and browser tests.
test: install browser
	$(BIN)/pytest -m "" -q

## The fast default: fake encoder, no server, no browser.
test-fast: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Debian's Chromium for the web-page test (no browser download); skipped where apt-get is missing.
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; \
	fi

bench: install
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/retrieval_inews.py

## Answer quality: the shared dev sets and our training questions, per kind, paired, with txtai's hybrid
## (the first run indexes 2 × 2,000 inews articles, ~10–20 min each; QA_BENCH_DIR picks the work folder).
bench-quality: install
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/quality.py index --sets inews_dev,train
	$(BIN)/python benchmarks/quality.py score --txtai

## Flat vs HNSW at 1M synthetic passages (needs benchmarks/.cache from `make bench`; PASSAGES=… to shrink).
PASSAGES ?= 1000000
.PHONY: bench-scale
bench-scale: install
	$(BIN)/python benchmarks/scale.py --passages $(PASSAGES)

## Encoding speed of every precision and fp32-vs-int8 retrieval quality (benchmarks/results/encode_speed.json).
bench-encode: install
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/encode_speed.py

## The whole service: build split, re-index, cold start, latency in process and over HTTP, memory.
bench-perf: install
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/perf.py --corpus seeds
	$(BIN)/python benchmarks/perf.py --corpus inews

clean:
	rm -rf $(VENV) .qa
