"""The bot's shared SQLite state: claims, history, last answers, expiry, and two processes at once."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from qa.bot.store import BotStateError, BotStore
from qa.records import Chunk, Hit, Section


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def store_in(tmp_path: Path, clock: Clock | None = None, bot: int = 123) -> BotStore:
    return BotStore(
        tmp_path / "telegram.sqlite3", bot, history_ttl=3600, update_ttl=86400, clock=clock or Clock()
    )


def hit(n: int, url: str | None = None) -> Hit:
    text = f"第{n}段：越南与中国的合作。"
    chunk = Chunk(
        f"doc{n}", Section.RELATED if n % 2 else Section.BODY, 10 * n, 10 * n + len(text), text, "h"
    )
    return Hit(chunk=chunk, score=0.5 / n, title=f"标题{n}", date=None if n == 2 else "2024-01-02", url=url)


def test_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    store_in(tmp_path)
    with sqlite3.connect(tmp_path / "telegram.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_update_is_claimed_once_per_bot(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    assert store.claim(7) is True
    assert store.claim(7) is False
    assert store.claim(8) is True
    assert store_in(tmp_path).claim(7) is False  # another process opening the same file
    assert store_in(tmp_path, bot=999).claim(7) is True  # update ids are per bot


def test_a_claim_expires_after_the_update_ttl(tmp_path: Path) -> None:
    clock = Clock()
    store = store_in(tmp_path, clock)
    assert store.claim(1)
    clock.now += 86400 + 1
    assert store.claim(1)


def test_remember_returns_the_earlier_questions_and_keeps_only_the_newest(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    assert store.remember(42, "q1", keep=2) == ()
    assert store.remember(42, "q2", keep=2) == ("q1",)
    assert store.remember(42, "q3", keep=2) == ("q1", "q2")
    assert store.remember(42, "q4", keep=2) == ("q2", "q3")
    assert store.history(42) == ("q3", "q4")
    assert store.remember(43, "other", keep=2) == ()  # chats are apart
    assert store.remember(42, "q5", keep=0) == () and store.history(42) == ()


def test_history_and_answers_expire(tmp_path: Path) -> None:
    clock = Clock()
    store = store_in(tmp_path, clock)
    store.remember(42, "q1", keep=4)
    store.save_answer(42, [hit(1)])
    clock.now += 3599
    assert store.history(42) == ("q1",) and store.last_answer(42) is not None
    clock.now += 2
    assert store.history(42) == () and store.last_answer(42) is None
    assert store.remember(42, "q2", keep=4) == ()  # the expired question is no context
    with sqlite3.connect(tmp_path / "telegram.sqlite3") as db:  # and the write deleted the old rows
        assert db.execute("SELECT question FROM turns").fetchall() == [("q2",)]
        assert db.execute("SELECT COUNT(*) FROM answers").fetchone() == (0,)


def test_the_last_answer_round_trips_as_hits(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    assert store.last_answer(42) is None
    hits = [hit(1, "https://example.com/a?x=1"), hit(2)]
    store.save_answer(42, hits)
    assert store_in(tmp_path).last_answer(42) == tuple(hits)
    store.save_answer(42, [])  # an abstention replaces it
    assert store.last_answer(42) == ()


def test_forget_drops_history_and_last_answer(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.remember(42, "q1", keep=4)
    store.save_answer(42, [hit(1)])
    store.remember(43, "q1", keep=4)
    store.forget(42)
    assert store.history(42) == () and store.last_answer(42) is None
    assert store.history(43) == ("q1",)


def test_a_file_that_is_not_sqlite_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "telegram.sqlite3").write_bytes(b"not a database at all" * 100)
    with pytest.raises(BotStateError, match=r"telegram\.sqlite3"):
        store_in(tmp_path)


def test_a_folder_in_the_way_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "telegram.sqlite3").mkdir()
    with pytest.raises(BotStateError):
        store_in(tmp_path)


def _hammer(path: str, worker: int, rounds: int, queue: multiprocessing.Queue[object]) -> None:
    store = BotStore(Path(path), 1, history_ttl=3600, update_ttl=86400)
    claimed = [u for u in range(rounds) if store.claim(u)]
    lengths = [len(store.remember(42, f"w{worker}-{n}", keep=3)) for n in range(rounds // 4)]
    queue.put((claimed, lengths))


def test_two_processes_claim_each_update_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[object] = context.Queue()
    path = str(tmp_path / "telegram.sqlite3")
    BotStore(Path(path), 1, history_ttl=3600, update_ttl=86400)  # created before the race
    workers = [context.Process(target=_hammer, args=(path, w, 200, queue)) for w in (1, 2)]
    for process in workers:
        process.start()
    results = [queue.get(timeout=60) for _ in workers]
    for process in workers:
        process.join(timeout=30)
        assert process.exitcode == 0
    claimed = [u for result in results for u in result[0]]  # type: ignore[index]
    assert sorted(claimed) == list(range(200))  # every update once, none twice
    store = BotStore(Path(path), 1, history_ttl=3600, update_ttl=86400)
    assert len(store.history(42)) == 3
    lengths = [n for result in results for n in result[1]]  # type: ignore[index]
    assert lengths.count(0) == 1 and max(lengths) == 3  # one first question; never more than kept
