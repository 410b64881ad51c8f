"""Live ingestion inside `qa serve`: one page ingester (its HTTP client and story signatures shared by
`POST /v1/documents {"url"}` and the feeds) and, when ``[feeds] urls`` lists any, the feed poller
thread, started once the index is open and stopped at shutdown."""

from __future__ import annotations

import logging
import threading
from typing import Any

from qa.engine import Engine
from qa.live.pages import PageIngester
from qa.live.poller import FeedPoller, feed_status

log = logging.getLogger(__name__)


class LiveIngestion:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ingester: PageIngester | None = None
        self._poller: FeedPoller | None = None
        self._lock = threading.Lock()

    @property
    def ingester(self) -> PageIngester:
        with self._lock:
            if self._ingester is None:
                self._ingester = PageIngester(self.engine)
            return self._ingester

    @property
    def feeds(self) -> tuple[str, ...]:
        return self.engine.settings.feeds.urls

    def start(self) -> None:
        """Start polling the configured feeds (nothing when there are none)."""
        if self.feeds and self._poller is None:
            self._poller = FeedPoller(self.ingester, self.feeds).start()
            log.info("polling %d feeds every %g s", len(self.feeds), self.engine.settings.feeds.interval_s)

    def stop(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.stop()
        with self._lock:
            ingester, self._ingester = self._ingester, None
        if ingester is not None:
            ingester.close()

    def status(self) -> list[dict[str, Any]] | None:
        """Each configured feed's last outcome (None when no feed is configured)."""
        return feed_status(self.engine.settings.index_dir, self.feeds) if self.feeds else None
