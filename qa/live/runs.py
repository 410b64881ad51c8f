"""What `qa ingest URL… / --feed URL` and `qa watch` do, apart from the command line: ingest, report
every page and feed on one line each (failures with their reason), and say whether all went well."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from qa.engine import Engine
from qa.live.pages import PageIngester
from qa.live.poller import FeedPoller, FeedReport

log = logging.getLogger(__name__)

Say = Callable[[str], None]


def describe_feed(report: FeedReport) -> list[str]:
    if report.outcome == "error":
        return [f"feed failed {report.url}: {report.error}"]
    if report.outcome == "not_modified":
        return [f"feed       {report.url}: not modified since the last poll"]
    new = sum(o.status in ("added", "updated") for o in report.items)
    lines = [f"feed       {report.url}: {len(report.items)} new items, {new} stored"]
    return lines + ["  " + o.describe() for o in report.items]


def ingest_sources(engine: Engine, urls: Sequence[str], feeds: Sequence[str], say: Say) -> bool:
    """Ingest each page and each feed (all of its items not seen before); True when none failed."""
    ingester = PageIngester(engine)
    ok = True
    try:
        for url in urls:
            outcome = ingester.try_ingest(url)
            ok &= outcome.status != "failed"
            say(outcome.describe())
        if feeds:
            reports = FeedPoller(ingester, feeds).poll(force=True)
            if reports is None:
                say("another process is polling these feeds right now; try again in a moment")
                return False
            for report in reports:
                ok &= report.outcome != "error" and all(o.status != "failed" for o in report.items)
                for line in describe_feed(report):
                    say(line)
    finally:
        ingester.close()
    return ok


def watch(engine: Engine, feeds: Sequence[str], say: Say, *, once: bool = False) -> bool:
    """Poll ``feeds`` every ``feeds.interval_s`` until interrupted (or one round with ``once``)."""
    ingester = PageIngester(engine)
    poller = FeedPoller(ingester, feeds)
    ok = True
    try:
        while True:
            reports = poller.poll(force=once)
            for report in reports or []:
                ok &= report.outcome != "error"
                for line in describe_feed(report):
                    say(line)
            if once:
                return ok
            time.sleep(1.0)  # a feed is polled at most a second after it is due; Ctrl-C ends
    finally:
        ingester.close()
