"""Questions run the pipeline a few at a time, in arrival order; their encodings are outside the limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from qa.config import Settings
from qa.engine import Engine
from qa.pipeline import _Slots


def _arrived(slots: _Slots, entered: list[int], count: int) -> None:
    """Wait until ``count`` threads are inside or in line (so the next one arrives after them)."""
    deadline = time.monotonic() + 10
    while len(entered) + len(slots._waiting) < count:
        assert time.monotonic() < deadline, "a thread never arrived"
        time.sleep(0.001)


def _crowd(slots: _Slots, count: int) -> tuple[list[int], int]:
    """``count`` threads arriving one by one (each waiting before the next comes) and held inside until
    all have arrived: the order they got in, and the most that were inside at once."""
    inside, most, entered = 0, 0, []
    lock = threading.Lock()
    hold = threading.Event()

    def run(i: int) -> None:
        nonlocal inside, most
        with slots:
            with lock:
                inside += 1
                most = max(most, inside)
                entered.append(i)
            hold.wait(5)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for i, thread in enumerate(threads):
        thread.start()
        _arrived(slots, entered, i + 1)
    first = list(entered)
    hold.set()
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads)
    return first, most


def test_slots_let_n_in_at_once() -> None:
    first, most = _crowd(_Slots(2), 6)
    assert first == [0, 1] and most == 2  # two inside, four waiting, never more than two


def test_the_waiting_get_in_in_arrival_order() -> None:
    """One slot: each leaving thread hands it to the first in line, so the order is the arrival order
    however the threads are scheduled."""
    slots = _Slots(1)
    entered: list[int] = []
    hold = threading.Event()

    def run(i: int) -> None:
        with slots:
            entered.append(i)
            if i == 0:
                hold.wait(5)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for i, thread in enumerate(threads):
        thread.start()
        _arrived(slots, entered, i + 1)
    hold.set()
    for thread in threads:
        thread.join(5)
    assert entered == list(range(8))


def test_no_limit_with_zero() -> None:
    slots, inside = _Slots(0), threading.Barrier(8, timeout=5)

    def run() -> None:
        with slots:
            inside.wait()  # all eight must be inside at once, or this times out

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not inside.broken


class _Blocking:
    """The query encoder, holding every encoding of ``text`` until ``release`` is set."""

    def __init__(self, inner: Any, text: str) -> None:
        self.inner, self.text = inner, text
        self.entered, self.release = threading.Event(), threading.Event()

    def encode_queries(self, texts: Sequence[str]) -> Any:
        if any(self.text in t for t in texts):
            self.entered.set()
            self.release.wait(10)
        return self.inner.encode_queries(texts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_question_being_encoded_holds_no_slot(make_settings: Callable[..., Settings]) -> None:
    engine = Engine(make_settings(server={"questions_at_once": 1})).open(show_progress=False)
    snap = engine.indexing.live()
    blocking = _Blocking(snap.searcher.encoder, "芽庄")
    snap.searcher.encoder = blocking
    first: list[Any] = []
    waiting = threading.Thread(target=lambda: first.append(engine.ask("芽庄市与哪个城市签署了协议?")))
    waiting.start()
    assert blocking.entered.wait(10)
    try:
        answer = engine.ask("胡志明市与中国多少个地方保持友好合作关系?")  # the one slot is free
        assert answer.hits
        assert not first  # answered while the other was still being encoded
    finally:
        blocking.release.set()
        waiting.join(20)
    assert first and first[0].question.startswith("芽庄")
