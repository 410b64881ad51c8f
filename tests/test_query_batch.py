"""The query-encoding cache and cross-thread batching give each caller exactly its own rows."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pytest

from qa.embeddings.encoder import FakeEncoder, Vectors
from qa.embeddings.query_batch import BatchingQueryEncoder


class Counting(FakeEncoder):
    def __init__(self, fail_on: str | None = None) -> None:
        super().__init__(32)
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def encode_queries(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(list(texts))
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("model failed")
        return super().encode_queries(texts)


def run_all(targets: list[threading.Thread]) -> None:
    for t in targets:
        t.start()
    for t in targets:
        t.join(timeout=30)
        assert not t.is_alive()


def test_concurrent_callers_are_batched_and_get_their_own_rows() -> None:
    inner = Counting()
    encoder = BatchingQueryEncoder(inner, cache_size=0, max_batch=64, wait_ms=50)
    questions = [f"越中合作问题{i}" for i in range(24)]
    got: dict[int, Vectors] = {}
    start = threading.Barrier(len(questions))

    def ask(i: int) -> None:
        start.wait()
        got[i] = encoder.encode_queries([questions[i]])

    run_all([threading.Thread(target=ask, args=(i,)) for i in range(len(questions))])
    for i, question in enumerate(questions):
        np.testing.assert_allclose(got[i][0], FakeEncoder(32).encode_queries([question])[0], rtol=1e-6)
    assert sum(len(c) for c in inner.calls) == len(questions)
    assert len(inner.calls) < len(questions) / 2  # most callers shared a forward pass


def test_max_batch_bounds_each_forward_pass() -> None:
    inner = Counting()
    encoder = BatchingQueryEncoder(inner, cache_size=0, max_batch=4, wait_ms=30)
    start = threading.Barrier(12)

    def ask(i: int) -> None:
        start.wait()
        encoder.encode_queries([f"q{i}"])

    run_all([threading.Thread(target=ask, args=(i,)) for i in range(12)])
    assert max(len(c) for c in inner.calls) <= 4
    assert sorted(t for c in inner.calls for t in c) == sorted(f"q{i}" for i in range(12))


def test_repeated_questions_come_from_the_cache_and_the_cache_is_bounded() -> None:
    inner = Counting()
    encoder = BatchingQueryEncoder(inner, cache_size=2, wait_ms=0)
    first = encoder.encode_queries(["a", "b", "a"])
    np.testing.assert_array_equal(first[0], first[2])
    assert inner.calls == [["a", "b"]]  # duplicates inside one call are encoded once
    encoder.encode_queries(["b"])
    assert len(inner.calls) == 1
    encoder.encode_queries(["c"])  # evicts "a", the least recently used
    encoder.encode_queries(["a"])
    assert inner.calls[-1] == ["a"]


def test_a_failure_reaches_every_caller_of_the_batch_and_the_next_batch_works() -> None:
    inner = Counting(fail_on="bad")
    encoder = BatchingQueryEncoder(inner, cache_size=0, wait_ms=50)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def ask(text: str) -> None:
        start.wait()
        try:
            encoder.encode_queries([text])
        except RuntimeError as exc:
            errors.append(exc)

    run_all([threading.Thread(target=ask, args=(t,)) for t in ("bad", "good")])
    assert len(errors) == 2 and len(inner.calls) == 1  # one shared batch failed for both
    assert encoder.encode_queries(["good"]).shape == (1, 32)


def test_passages_and_properties_pass_through() -> None:
    inner = Counting()
    encoder = BatchingQueryEncoder(inner)
    assert (encoder.name, encoder.dim) == ("fake:32", 32)
    rows = encoder.encode_passages(["一", "二"])
    assert rows.shape == (2, 32) and inner.calls == []
    assert encoder.encode_queries([]).shape == (0, 32)


@pytest.mark.parametrize("wait_ms", [0.0, 5.0])
def test_many_threads_many_rounds_never_mix_rows(wait_ms: float) -> None:
    encoder = BatchingQueryEncoder(FakeEncoder(32), cache_size=8, max_batch=5, wait_ms=wait_ms)
    reference = FakeEncoder(32)
    failures: list[str] = []

    def worker(seed: int) -> None:
        for round_ in range(30):
            texts = [f"问题{(seed * 7 + round_ * 3 + j) % 40}" for j in range(1 + round_ % 3)]
            rows = encoder.encode_queries(texts)
            if not np.allclose(rows, reference.encode_queries(texts), atol=1e-6):
                failures.append(f"{seed}/{round_}")

    run_all([threading.Thread(target=worker, args=(s,)) for s in range(8)])
    assert failures == []
