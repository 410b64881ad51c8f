"""The bot's state, shared by every server process: a small SQLite file in the index folder.

``qa serve --workers N`` runs N processes, and Telegram may deliver a chat's follow-up to any of them
(or deliver one update twice). So nothing the bot remembers lives in a process's memory; it lives in
``<index.dir>/telegram.sqlite3`` (WAL mode: readers never wait for the writer), scoped to one bot (the
numeric id before ``:`` in its token):

* ``updates``: each ``update_id`` claimed once (:meth:`BotStore.claim`); a retried delivery, on any
  process, finds it claimed. Kept ``update_ttl`` seconds (Telegram gives up on an update after 24 hours).
* ``turns``: each chat's recent questions, for follow-ups (:meth:`BotStore.remember` reads the earlier
  ones and appends the new one in one write transaction, so two processes never interleave a chat).
* ``answers``: the cited passages of each chat's last answer, as typed :class:`qa.records.Hit` records,
  for ``/sources N``.

A chat's questions and last answer expire ``history_ttl`` seconds after they were written; expired rows
are ignored at once and deleted by the next write at most :data:`PRUNE_EVERY` seconds later. WAL needs
every process on one machine (it uses shared memory): do not put this file on a network file system.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qa.errors import BotStateError
from qa.records import Chunk, Hit, Section

__all__ = ["FILE_NAME", "BotStateError", "BotStore", "hit_from_json", "hit_to_json"]

log = logging.getLogger(__name__)

FILE_NAME = "telegram.sqlite3"
PRUNE_EVERY = 60.0  # seconds between deletions of expired rows (per process)
BUSY_TIMEOUT = 10.0  # seconds a write waits for another process's write transaction
SCHEMA = """
CREATE TABLE IF NOT EXISTS updates (
    bot INTEGER NOT NULL, update_id INTEGER NOT NULL, at REAL NOT NULL, PRIMARY KEY (bot, update_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS turns (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, bot INTEGER NOT NULL, chat INTEGER NOT NULL,
    question TEXT NOT NULL, at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_by_chat ON turns (bot, chat, seq);
CREATE TABLE IF NOT EXISTS answers (
    bot INTEGER NOT NULL, chat INTEGER NOT NULL, at REAL NOT NULL, hits TEXT NOT NULL,
    PRIMARY KEY (bot, chat)
) WITHOUT ROWID;
"""


def hit_to_json(hit: Hit) -> dict[str, Any]:
    """What ``/sources`` needs of a cited passage, as JSON."""
    chunk = hit.chunk
    return {
        "doc_id": chunk.doc_id,
        "section": chunk.section.value,
        "start": chunk.start,
        "end": chunk.end,
        "text": chunk.text,
        "heading": chunk.heading,
        "score": hit.score,
        "title": hit.title,
        "date": hit.date,
        "url": hit.url,
    }


def hit_from_json(data: dict[str, Any]) -> Hit:
    chunk = Chunk(
        doc_id=data["doc_id"],
        section=Section(data["section"]),
        start=data["start"],
        end=data["end"],
        text=data["text"],
        heading=data.get("heading", ""),
    )
    return Hit(chunk=chunk, score=data["score"], title=data["title"], date=data["date"], url=data["url"])


class BotStore:
    """One bot's shared state in the SQLite file ``path``; safe to use from threads and processes."""

    def __init__(
        self,
        path: Path,
        bot: int,
        *,
        history_ttl: float,
        update_ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.bot = bot
        self.history_ttl = history_ttl
        self.update_ttl = update_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._pruned = 0.0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint; enough for chat state
            with self._transaction():
                self._create()
        except (OSError, sqlite3.Error) as exc:
            raise BotStateError(f"cannot open the bot's state file {path}: {exc}") from exc
        if str(mode).lower() != "wal":
            log.warning("bot state %s: SQLite refused WAL mode (journal_mode=%s)", path, mode)

    def _create(self) -> None:
        for statement in SCHEMA.split(";"):  # not executescript, which commits on its own
            if statement.strip():
                self._db.execute(statement)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: takes the file's write lock at once, so a
        read-then-write is never interleaved with another process's)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _write(self, work: Callable[[sqlite3.Connection, float], Any]) -> Any:
        now = self._clock()
        try:
            with self._transaction() as db:
                result = work(db, now)
                if now - self._pruned >= PRUNE_EVERY:
                    self._prune(db, now)
                    self._pruned = now
                return result
        except sqlite3.Error as exc:
            raise BotStateError(f"the bot's state file {self.path}: {exc}") from exc

    def _prune(self, db: sqlite3.Connection, now: float) -> None:
        db.execute("DELETE FROM updates WHERE at < ?", (now - self.update_ttl,))
        db.execute("DELETE FROM turns WHERE at < ?", (now - self.history_ttl,))
        db.execute("DELETE FROM answers WHERE at < ?", (now - self.history_ttl,))

    # -- updates ---------------------------------------------------------------------------------------
    def claim(self, update_id: int) -> bool:
        """True for the first delivery of ``update_id`` (on any process), False for a repeat."""

        def work(db: sqlite3.Connection, now: float) -> bool:
            row = db.execute(
                "SELECT at FROM updates WHERE bot = ? AND update_id = ?", (self.bot, update_id)
            ).fetchone()
            if row is not None and row[0] >= now - self.update_ttl:
                return False
            db.execute(
                "INSERT OR REPLACE INTO updates (bot, update_id, at) VALUES (?, ?, ?)",
                (self.bot, update_id, now),
            )
            return True

        claimed: bool = self._write(work)
        return claimed

    # -- history ---------------------------------------------------------------------------------------
    def remember(self, chat: int, question: str, keep: int) -> tuple[str, ...]:
        """Record ``question`` in ``chat``; returns the chat's earlier questions still kept (at most
        ``keep``, oldest first). Only the ``keep`` newest questions of a chat are stored."""

        def work(db: sqlite3.Connection, now: float) -> tuple[str, ...]:
            if keep <= 0:
                db.execute("DELETE FROM turns WHERE bot = ? AND chat = ?", (self.bot, chat))
                return ()
            rows = db.execute(
                "SELECT question FROM turns WHERE bot = ? AND chat = ? AND at >= ? ORDER BY seq DESC LIMIT ?",
                (self.bot, chat, now - self.history_ttl, keep),
            ).fetchall()
            db.execute(
                "INSERT INTO turns (bot, chat, question, at) VALUES (?, ?, ?, ?)",
                (self.bot, chat, question, now),
            )
            db.execute(
                "DELETE FROM turns WHERE bot = ? AND chat = ? AND seq NOT IN "
                "(SELECT seq FROM turns WHERE bot = ? AND chat = ? ORDER BY seq DESC LIMIT ?)",
                (self.bot, chat, self.bot, chat, keep),
            )
            return tuple(question for (question,) in reversed(rows))

        earlier: tuple[str, ...] = self._write(work)
        return earlier

    def history(self, chat: int) -> tuple[str, ...]:
        """The questions of ``chat`` kept for follow-ups, oldest first."""
        rows = self._read(
            "SELECT question FROM turns WHERE bot = ? AND chat = ? AND at >= ? ORDER BY seq",
            (self.bot, chat, self._clock() - self.history_ttl),
        )
        return tuple(question for (question,) in rows)

    def forget(self, chat: int) -> None:
        """Forget the questions and the last answer of ``chat`` (``/new``)."""

        def work(db: sqlite3.Connection, now: float) -> None:
            db.execute("DELETE FROM turns WHERE bot = ? AND chat = ?", (self.bot, chat))
            db.execute("DELETE FROM answers WHERE bot = ? AND chat = ?", (self.bot, chat))

        self._write(work)

    # -- the last answer -------------------------------------------------------------------------------
    def save_answer(self, chat: int, hits: Sequence[Hit]) -> None:
        """Keep the cited passages of ``chat``'s last answer (none, for an abstention)."""
        payload = json.dumps([hit_to_json(hit) for hit in hits], ensure_ascii=False)

        def work(db: sqlite3.Connection, now: float) -> None:
            db.execute(
                "INSERT OR REPLACE INTO answers (bot, chat, at, hits) VALUES (?, ?, ?, ?)",
                (self.bot, chat, now, payload),
            )

        self._write(work)

    def last_answer(self, chat: int) -> tuple[Hit, ...] | None:
        """The passages cited by ``chat``'s last answer; None when there is none (or it expired)."""
        rows = self._read(
            "SELECT hits FROM answers WHERE bot = ? AND chat = ? AND at >= ?",
            (self.bot, chat, self._clock() - self.history_ttl),
        )
        if not rows:
            return None
        try:
            return tuple(hit_from_json(item) for item in json.loads(rows[0][0]))
        except (ValueError, KeyError, TypeError) as exc:
            raise BotStateError(f"the bot's state file {self.path}: an unreadable answer: {exc}") from exc

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        try:
            with self._lock:
                return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise BotStateError(f"the bot's state file {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
