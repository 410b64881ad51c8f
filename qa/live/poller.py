"""Polling RSS/Atom feeds: each new item's page is ingested (qa.live.pages), seen items are skipped,
and a failing feed is retried with back-off without holding up the others.

What was seen, each feed's ETag / Last-Modified and its last outcome are kept in ``feeds.json`` in the
index folder (written atomically under the index's build lock), so a restart neither fetches every
item again nor forgets a failure; ``/readyz`` reports from the same file. Several processes (``qa serve
--workers N``, a ``qa watch`` beside a server) may poll: a poll round takes the non-blocking lock
``feeds.lock`` and a process that finds it taken skips the round.

An item whose page fails for a reason that may pass (timeout, 5xx, connection) is tried again at the
next polls, ``ITEM_TRIES`` times in all; while one is pending the feed is fetched without its
validators so it is seen again. Polls are counted by outcome in ``qa_feed_polls_total`` (/metrics).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from qa import metrics
from qa.errors import FetchError
from qa.index import layout
from qa.ingest.feeds import parse_feed
from qa.live.pages import PageIngester, PageOutcome

log = logging.getLogger(__name__)

STATE_FILE = "feeds.json"
LOCK_FILE = "feeds.lock"
ITEM_TRIES = 3
SEEN_LIMIT = 5000  # item keys remembered per feed (the newest)
Outcome = Literal["ok", "not_modified", "error"]


@dataclass
class FeedState:
    url: str
    etag: str | None = None
    last_modified: str | None = None
    seen: list[str] = field(default_factory=list)
    tries: dict[str, int] = field(default_factory=dict)  # item key → failed attempts so far
    failures: int = 0  # consecutive failed polls
    last_poll: str | None = None
    last_success: str | None = None
    last_error: str | None = None
    next_poll: float = 0.0  # epoch seconds
    added: int = 0  # articles added from this feed, in all

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeedState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class FeedReport:
    url: str
    outcome: Outcome
    items: tuple[PageOutcome, ...] = ()
    error: str | None = None
    title: str = ""


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def read_states(index_dir: Path) -> dict[str, FeedState]:
    """The feeds' states as last written; empty when there is no (readable) file yet."""
    path = index_dir / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {url: FeedState.from_json(item) for url, item in data.get("feeds", {}).items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        log.warning("%s is unreadable (%s): starting the feeds' state afresh", path, exc)
        return {}


def write_states(index_dir: Path, states: dict[str, FeedState]) -> None:
    index_dir.mkdir(parents=True, exist_ok=True)
    payload = {"feeds": {url: asdict(state) for url, state in states.items()}}
    with layout.build_lock(index_dir):  # the index's clean-up removes temporary files only under it
        layout.write_atomic(
            index_dir / STATE_FILE, json.dumps(payload, ensure_ascii=False, indent=1).encode()
        )


@contextlib.contextmanager
def poll_lock(index_dir: Path) -> Iterator[bool]:
    """True when this process may poll now (no other process is polling)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / LOCK_FILE, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class FeedPoller:
    def __init__(self, ingester: PageIngester, urls: Sequence[str]) -> None:
        self.ingester = ingester
        self.urls = list(dict.fromkeys(urls))
        s = ingester.engine.settings
        self.index_dir = s.index_dir
        self.feeds = s.feeds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._round = threading.Lock()

    # -- one round ---------------------------------------------------------------------------------
    def poll(self, *, force: bool = False) -> list[FeedReport] | None:
        """Poll every feed that is due (all with ``force``); None when another process is polling."""
        with self._round, poll_lock(self.index_dir) as mine:
            if not mine:
                return None
            states = read_states(self.index_dir)
            reports = []
            for url in self.urls:
                state = states.setdefault(url, FeedState(url))
                if not force and state.next_poll > time.time():
                    continue
                reports.append(self._poll_feed(state))
                write_states(self.index_dir, states)  # after each feed: a crash loses one feed's round
            return reports

    def _poll_feed(self, state: FeedState) -> FeedReport:
        state.last_poll = _now()
        try:
            fetched = self.ingester.fetcher.get(
                state.url, "feed", {"etag": state.etag or "", "last_modified": state.last_modified or ""}
            )
            if fetched.status == 304:
                self._succeeded(state)
                metrics.record_feed_poll("not_modified")
                return FeedReport(state.url, "not_modified")
            title, items = parse_feed(fetched.body, state.url)
        except FetchError as exc:
            return self._failed(state, exc.reason if exc.url == state.url else str(exc))
        except Exception as exc:  # one broken feed never stops the others
            log.exception("polling %s failed", state.url)
            return self._failed(state, f"unexpected error: {type(exc).__name__}")
        seen = set(state.seen)
        outcomes: list[PageOutcome] = []
        pending = False
        unseen = [i for i in items if i.key not in seen]
        for item in unseen[: self.feeds.max_items]:
            outcome = self.ingester.try_ingest(item.link, fallback_date=item.date)
            outcomes.append(outcome)
            if outcome.status == "added":
                state.added += 1
            tries = state.tries.get(item.key, 0) + 1
            if outcome.status == "failed" and outcome.transient and tries < ITEM_TRIES:
                state.tries[item.key] = tries
                pending = True
                continue
            if outcome.status == "failed":
                log.warning("feed %s: item %s given up: %s", state.url, item.link, outcome.error)
            state.tries.pop(item.key, None)
            state.seen.append(item.key)
        state.seen = state.seen[-SEEN_LIMIT:]
        more = len(unseen) > self.feeds.max_items
        # validators only when nothing is left to fetch: else a 304 would hide the pending items
        keep = not pending and not more
        state.etag = fetched.headers.get("etag") if keep else None
        state.last_modified = fetched.headers.get("last-modified") if keep else None
        self._succeeded(state)
        metrics.record_feed_poll("ok")
        return FeedReport(state.url, "ok", tuple(outcomes), title=title)

    def _succeeded(self, state: FeedState) -> None:
        state.failures, state.last_error = 0, None
        state.last_success = state.last_poll
        state.next_poll = time.time() + self.feeds.interval_s

    def _failed(self, state: FeedState, reason: str) -> FeedReport:
        state.failures += 1
        state.last_error = reason
        wait = min(self.feeds.interval_s * 2 ** (state.failures - 1), self.feeds.max_backoff_s)
        state.next_poll = time.time() + wait
        metrics.record_feed_poll("error")
        log.warning(
            "feed %s failed (%d in a row, next try in %.0f s): %s", state.url, state.failures, wait, reason
        )
        return FeedReport(state.url, "error", error=reason)

    # -- in the background -------------------------------------------------------------------------
    def start(self) -> FeedPoller:
        if self._thread is None and self.urls:
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, name="qa-feeds", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def run(self) -> None:
        """Poll until stopped, waking when the next feed is due (at most a second late)."""
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # the loop outlives any one round
                log.exception("a feed poll round failed")
            states = read_states(self.index_dir)
            due = min((states[u].next_poll for u in self.urls if u in states), default=0.0)
            self._stop.wait(min(max(due - time.time(), 0.2), 1.0))


def feed_status(index_dir: Path, urls: Sequence[str]) -> list[dict[str, Any]]:
    """Each configured feed's last outcome, as /readyz reports it."""
    states = read_states(index_dir)
    out = []
    for url in urls:
        state = states.get(url, FeedState(url))
        out.append(
            {
                "url": url,
                "ok": state.failures == 0 and state.last_poll is not None,
                "last_poll": state.last_poll,
                "last_success": state.last_success,
                "last_error": state.last_error,
                "failures": state.failures,
                "next_poll": (
                    datetime.fromtimestamp(state.next_poll, UTC).replace(microsecond=0).isoformat()
                    if state.next_poll
                    else None
                ),
                "seen": len(state.seen),
                "added": state.added,
            }
        )
    return out
