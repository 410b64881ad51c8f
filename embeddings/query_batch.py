"""Query encodings for a busy server: an LRU cache, and concurrent questions encoded in one batch.

Under load many request threads each want one short question encoded. Run one by one they contend for the
same cores and each pays a whole forward pass; here the first caller becomes the batch leader, waits a
moment (``wait_ms``) for other callers to join, encodes everything that joined in one call, and hands each
caller its rows. Callers that arrive while a batch runs form the next one. Repeated questions come from
the cache (questions are short; an entry is one 384-float row, ~1.5 kB).

Only ``encode_queries`` changes; passages go straight to the wrapped encoder.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from qa.embeddings.encoder import Encoder, Vectors


class _Batch:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.done = threading.Event()
        self.result: Vectors | None = None
        self.error: BaseException | None = None


class BatchingQueryEncoder:
    """An :class:`Encoder` whose ``encode_queries`` is cached and batched across threads."""

    def __init__(
        self,
        inner: Encoder,
        *,
        cache_size: int = 10_000,
        max_batch: int = 32,
        wait_ms: float = 2.0,
        on_encoded: Callable[[int, float], None] | None = None,
    ):
        """``on_encoded(questions, seconds)`` is called after each forward pass (metrics)."""
        self.inner = inner
        self.on_encoded = on_encoded
        self.cache_size = cache_size
        self.max_batch = max(1, max_batch)
        self.wait = max(0.0, wait_ms) / 1000
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._lock = threading.Lock()  # guards _open
        self._open: _Batch | None = None  # the batch that callers may still join
        self._encoding = threading.Lock()  # one forward pass at a time
        self.batches = 0  # statistics, for benchmarks and tests
        self.encoded = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> Vectors:
        return self.inner.encode_passages(texts, show_progress=show_progress)

    # -- cache ---------------------------------------------------------------------------------------
    def _cached(self, text: str) -> Vectors | None:
        if not self.cache_size:
            return None
        with self._cache_lock:
            row = self._cache.get(text)
            if row is not None:
                self._cache.move_to_end(text)
            return row

    def _remember(self, texts: Sequence[str], rows: Vectors) -> None:
        if not self.cache_size:
            return
        with self._cache_lock:
            for text, row in zip(texts, rows, strict=True):
                self._cache[text] = row
                self._cache.move_to_end(text)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    # -- batching ------------------------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            row = self._cached(text)
            if row is None:
                missing.setdefault(text, []).append(i)
            else:
                out[i] = row
        if missing:
            wanted = list(missing)
            rows = self._encode_batched(wanted)
            self._remember(wanted, rows)
            for text, row in zip(wanted, rows, strict=True):
                out[missing[text]] = row
        return out

    def _encode_batched(self, texts: list[str]) -> Vectors:
        with self._lock:
            batch = self._open
            leader = batch is None or len(batch.texts) + len(texts) > self.max_batch
            if leader:
                batch = _Batch()
                self._open = batch
            assert batch is not None
            offset = len(batch.texts)
            batch.texts.extend(texts)
        if leader:
            self._lead(batch)
        batch.done.wait()
        if batch.error is not None:
            raise batch.error
        assert batch.result is not None
        return batch.result[offset : offset + len(texts)]

    def _lead(self, batch: _Batch) -> None:
        """Wait for others to join (while the previous batch may still be encoding), then encode."""
        deadline = time.perf_counter() + self.wait
        with self._encoding:  # the previous batch finishes first; late joiners meanwhile add to ours
            remaining = deadline - time.perf_counter()
            if remaining > 0:
                time.sleep(remaining)
            with self._lock:
                if self._open is batch:
                    self._open = None  # closed: later callers start the next batch
            try:
                started = time.perf_counter()
                batch.result = self.inner.encode_queries(batch.texts)
                self.batches += 1
                self.encoded += len(batch.texts)
                if self.on_encoded is not None:
                    self.on_encoded(len(batch.texts), time.perf_counter() - started)
            except BaseException as exc:  # handed to every caller of the batch
                batch.error = exc
            finally:
                batch.done.set()
