"""An RSS or Atom feed's bytes → its items (link, title, stable key, publication date), via feedparser.

A feed that feedparser cannot make sense of (not XML, no items and a parse error) is a FetchError
naming the feed; a feed with no items is simply empty.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import httpx

from qa.errors import FetchError
from qa.ingest.dates import parse_date


@dataclass(frozen=True)
class FeedItem:
    key: str  # what marks the item as seen: its guid/id, else its link
    link: str
    title: str
    date: str | None  # the item's own publication date (its ``published``, else ``updated``)


def _date_of(entry: Any) -> str | None:
    for field in ("published", "updated", "created"):
        found = parse_date(entry.get(field))
        if found is not None:
            return found
    for field in ("published_parsed", "updated_parsed"):
        parsed = entry.get(field)
        if parsed:
            return f"{parsed.tm_year:04d}-{parsed.tm_mon:02d}-{parsed.tm_mday:02d}"
    return None


def parse_feed(raw: bytes, url: str) -> tuple[str, list[FeedItem]]:
    """The feed's title and its items in the feed's order; items without a link are skipped."""
    import feedparser

    parsed = feedparser.parse(raw, sanitize_html=False, resolve_relative_uris=False)
    entries = list(parsed.get("entries") or [])
    if not entries and (parsed.get("bozo") or not parsed.get("version")):
        reason = parsed.get("bozo_exception")
        raise FetchError(url, f"not an RSS or Atom feed ({reason or 'no feed elements'})")
    items: list[FeedItem] = []
    for entry in entries:
        link = (entry.get("link") or "").strip()
        if not link:
            continue
        with contextlib.suppress(httpx.InvalidURL, ValueError):  # else reported when the page is fetched
            link = str(httpx.URL(url).join(link))  # a relative link is relative to the feed
        key = (entry.get("id") or entry.get("guid") or link).strip()
        items.append(
            FeedItem(key=key, link=link, title=(entry.get("title") or "").strip(), date=_date_of(entry))
        )
    title = str((parsed.get("feed") or {}).get("title") or "")
    return title, items
