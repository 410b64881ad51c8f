"""Counters of what generation did, per process: a plain dict a metrics exporter can read.

``generation_counters()`` returns a snapshot, e.g. ``{"requests": 12, "written": 9,
"fallback_unsupported": 1, "upstream_failures": 2, "upstream_failures_timeout": 1,
"upstream_failures_status_500": 1, "sentences_kept": 20, "sentences_removed": 3}``. A Prometheus
exporter could publish each key; /metrics has the fallbacks, by reason, as
``qa_generation_fallbacks_total{reason}`` (``unsupported``, ``timeout``, ``status_500`` …).
"""

from __future__ import annotations

import threading
from collections import Counter

from qa import metrics as service_metrics

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def count(name: str, n: int = 1) -> None:
    with _lock:
        _counts[name] += n
    if name.startswith("fallback_"):
        service_metrics.record_generation_fallback(name.removeprefix("fallback_"))


def upstream_failure(kind: str) -> None:
    with _lock:
        _counts["upstream_failures"] += 1
        _counts[f"upstream_failures_{kind}"] += 1
    service_metrics.record_generation_fallback(kind)  # qa_generation_fallbacks_total{reason}


def generation_counters() -> dict[str, int]:
    """A snapshot of the counters since the process started."""
    with _lock:
        return dict(_counts)


def reset() -> None:
    """For tests."""
    with _lock:
        _counts.clear()
