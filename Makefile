# Everything runs in .venv, created on first use. torch comes first, as the CPU wheel that lies on disk,
# so that pip never pulls a multi-GB CUDA build. Every package is installed at the version that
# requirements.lock names (`pip install -c`), so every run resolves the same versions; `make lock`
# writes that file again from pyproject.toml (after adding a dependency).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
PIP ?= pip==26.3
LOCK := requirements.lock
QUESTION ?= 胡志明市与中国多少个地方保持友好合作关系?

.PHONY: install lock run test test-fast lint format browser bench bench-quality bench-encode bench-perf clean

# pip's output goes to $(VENV)/install.log (its last lines are shown when it fails)
$(BIN)/.installed: pyproject.toml $(LOCK)
	@echo "installing into $(VENV) from $(LOCK) (first time: a few minutes; log: $(VENV)/install.log)"
	@$(PYTHON) -m venv $(VENV)
	@{ $(BIN)/python -m pip install '$(PIP)' && \
	   $(BIN)/python -m pip install -c $(LOCK) '$(TORCH)' && \
	   { ! $(BIN)/python -m pip show -q opencc-python-reimplemented 2>/dev/null || \
	     { $(BIN)/python -m pip uninstall -y opencc-python-reimplemented && \
	       $(BIN)/python -m pip install --force-reinstall --no-deps -c $(LOCK) opencc; }; } && \
	   $(BIN)/python -m pip install -c $(LOCK) -e '.[dev]'; } > $(VENV)/install.log 2>&1 || \
	   { tail -n 25 $(VENV)/install.log; echo "make install failed; the whole log: $(VENV)/install.log"; exit 1; }
	@touch $@

install: $(BIN)/.installed

## Pin every dependency and extra of pyproject.toml (Python 3.11, $(TORCH)) in $(LOCK): pins already
## there are kept, new dependencies are added; `make lock UPGRADE=1` resolves everything to the newest.
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet '$(PIP)' 'pip-tools>=7.4'
	@echo '$(TORCH)' > $(VENV)/torch.pin
	$(BIN)/pip-compile --quiet --all-extras --allow-unsafe --strip-extras --no-emit-index-url \
		--no-emit-find-links $(if $(UPGRADE),--upgrade) -c $(VENV)/torch.pin -o $(LOCK) pyproject.toml 2> $(VENV)/lock.log || \
		{ cat $(VENV)/lock.log; exit 1; }
	@echo "$(LOCK): $$(grep -c '^[a-z0-9]' $(LOCK)) packages pinned"

## Answer a question over seeds/ (builds the model and the index on first use).
run: install
	@$(BIN)/qa ask "$(QUESTION)"

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
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev,bench]'
	$(BIN)/python benchmarks/retrieval_inews.py

## Answer quality: the shared dev sets and our training questions, per kind, paired, with txtai's hybrid
## (the first run indexes 2 × 2,000 inews articles, ~10–20 min each; QA_BENCH_DIR picks the work folder).
bench-quality: install
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev,bench]'
	$(BIN)/python benchmarks/quality.py index --sets inews_dev,train
	$(BIN)/python benchmarks/quality.py score --txtai

## HNSW graphs and efSearch against exact search at 1M synthetic passages, made from the passages of a
## real index the service built (SCALE_INDEX: the configured index by default; PASSAGES=… to shrink).
PASSAGES ?= 1000000
SCALE_INDEX ?= .qa/index
.PHONY: bench-scale
bench-scale: install
	$(BIN)/python benchmarks/scale.py --passages $(PASSAGES) --index $(SCALE_INDEX)

## Lexical engines at 1M synthetic passages (ours, tantivy, SQLite FTS5; bm25s at 75k), then the service's
## own write at 1M (benchmarks/lexical_engines.py, service_write.py; the first run tokenises inews, ~2 min).
.PHONY: bench-lexical
bench-lexical: install
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev,bench]'
	$(BIN)/python benchmarks/lexical_engines.py --passages 75000
	$(BIN)/python benchmarks/lexical_engines.py --passages $(PASSAGES) --engines ours,tantivy,fts5
	$(BIN)/python benchmarks/service_write.py --passages $(PASSAGES)

## Encoding speed of every precision and fp32-vs-int8 retrieval quality (benchmarks/results/encode_speed.json).
bench-encode: install
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev,bench]'
	$(BIN)/python benchmarks/encode_speed.py

## The whole service: build split, re-index, cold start, latency in process and over HTTP, memory.
bench-perf: install
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev,bench]'
	$(BIN)/python benchmarks/perf.py --corpus seeds
	$(BIN)/python benchmarks/perf.py --corpus inews

clean:
	rm -rf $(VENV) .qa
