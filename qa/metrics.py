"""The service's own Prometheus metrics, and small functions the rest of the code calls to record them.

HTTP metrics (requests, latency, sizes by route) come from ``prometheus-fastapi-instrumentator``
(:mod:`qa.api.metrics_route`); everything about questions and the index is defined here:

======================================  =========================================================
``qa_questions_total{outcome}``         questions answered (``answered``) or abstained on
``qa_abstentions_total{reason}``        abstentions by kind of reason (see :func:`abstention_reason`)
``qa_retrieval_seconds``                a question from checked input to its answer (histogram)
``qa_question_encoding_seconds``        one forward pass of the encoder over a batch of questions
``qa_index_articles`` / ``_passages``   size of the loaded snapshot (``_segments``: its segments)
``qa_index_writes_total{kind}``         ``build`` (that changed something), ``add``, ``delete``, ``merge``
``qa_feed_polls_total{outcome}``        polls of a news feed (:func:`record_feed_poll`)
``qa_generation_fallbacks_total{reason}``  answers that fell back from generation to extraction
======================================  =========================================================

Several processes (``qa serve --workers N``): prometheus_client's multiprocess mode. ``qa serve`` points
``PROMETHEUS_MULTIPROC_DIR`` at an emptied folder (``metrics.multiprocess_dir``) before the workers start;
each worker writes its values into its own files there, and ``/metrics``, whichever worker answers it,
adds up every worker's counters and histograms. The index gauges are the value most recently set by any
worker (they all follow the same ``CURRENT`` snapshot; the worker answering a scrape sets them first).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client itself when it is imported
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LABEL = re.compile(r"[a-z][a-z0-9_]{0,39}")

QUESTIONS = Counter("qa_questions_total", "Questions answered or abstained on.", ["outcome"])
ABSTENTIONS = Counter("qa_abstentions_total", "Abstentions by kind of reason.", ["reason"])
RETRIEVAL_SECONDS = Histogram(
    "qa_retrieval_seconds", "Time from a checked question to its answer.", buckets=_SECONDS
)
ENCODING_SECONDS = Histogram(
    "qa_question_encoding_seconds", "One encoder pass over a batch of questions.", buckets=_SECONDS
)
ENCODED_QUESTIONS = Counter("qa_questions_encoded_total", "Questions run through the encoder (not cached).")
ARTICLES = Gauge("qa_index_articles", "Articles in the loaded snapshot.", multiprocess_mode="mostrecent")
PASSAGES = Gauge("qa_index_passages", "Passages in the loaded snapshot.", multiprocess_mode="mostrecent")
SEGMENTS = Gauge("qa_index_segments", "Segments of the loaded snapshot.", multiprocess_mode="mostrecent")
WRITES = Counter("qa_index_writes_total", "Index writes by kind.", ["kind"])
FEED_POLLS = Counter("qa_feed_polls_total", "Polls of a news feed by outcome.", ["outcome"])
GENERATION_FALLBACKS = Counter(
    "qa_generation_fallbacks_total", "Answers that fell back from generation, by reason.", ["reason"]
)

WRITE_KINDS = frozenset({"build", "add", "delete", "merge"})

# The abstention reasons of qa.retrieval.abstain, by how they begin (they are sentences for users).
_REASONS = (
    ("没有找到相关段落", "no_passages"),
    ("检索到的文章没有提到", "names_missing"),
    ("最相关的文章没有提到", "names_missing"),
    ("最相关的段落没有提到", "names_out_of_window"),
    ("相关度过低", "low_similarity"),
    ("检索到的文章没有涉及", "words_unknown"),
    ("最相关的段落不足以回答", "gate_low"),
)


for _outcome in ("answered", "abstained"):  # known label values are exported as 0 from the start
    QUESTIONS.labels(_outcome)
for _kind in sorted({kind for _, kind in _REASONS} | {"other"}):
    ABSTENTIONS.labels(_kind)
for _kind in sorted(WRITE_KINDS):
    WRITES.labels(_kind)


def label(value: str) -> str:
    """A bounded label value: lower-case words and underscores, else ``other`` (no free text)."""
    value = value.strip().lower().replace("-", "_").replace(" ", "_")
    return value if _LABEL.fullmatch(value) else "other"


def abstention_reason(text: str) -> str:
    """The kind of an abstention reason sentence, a label with few values."""
    for prefix, kind in _REASONS:
        if text.startswith(prefix):
            return kind
    return "other"


def record_answer(answerable: bool, reason: str, seconds: float) -> None:
    QUESTIONS.labels("answered" if answerable else "abstained").inc()
    if not answerable:
        ABSTENTIONS.labels(abstention_reason(reason)).inc()
    RETRIEVAL_SECONDS.observe(seconds)


def record_encoding(questions: int, seconds: float) -> None:
    """Called by the query encoder after each forward pass (cached questions never reach it)."""
    ENCODED_QUESTIONS.inc(questions)
    ENCODING_SECONDS.observe(seconds)


def record_write(kind: str) -> None:
    if kind not in WRITE_KINDS:
        raise ValueError(f"unknown index write kind {kind!r}; one of {sorted(WRITE_KINDS)}")
    WRITES.labels(kind).inc()


def record_index_size(articles: int, passages: int, segments: int) -> None:
    ARTICLES.set(articles)
    PASSAGES.set(passages)
    SEGMENTS.set(segments)


def record_feed_poll(outcome: str) -> None:
    """One poll of a news feed: e.g. ``new`` (articles added), ``unchanged``, ``error``."""
    FEED_POLLS.labels(label(outcome)).inc()


def record_generation_fallback(reason: str) -> None:
    """An answer that was extracted because generation failed or was refused: e.g. ``timeout``, ``error``,
    ``ungrounded``."""
    GENERATION_FALLBACKS.labels(label(reason)).inc()


# -- several processes -------------------------------------------------------------------------------
def multiprocess_dir() -> Path | None:
    """The folder of multiprocess mode when this process runs in it, else None."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def prepare_multiprocess(folder: Path) -> None:
    """Before worker processes start (and before they import prometheus_client): an empty folder, named
    in the environment they inherit. Files of an earlier run would add its counts to this one's."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)


def exposition() -> tuple[bytes, str]:
    """The text of ``/metrics`` and its content type: this process's registry, or every worker's."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST
