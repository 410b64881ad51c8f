"""One web page into the corpus: fetch (qa.ingest.fetch), extract (qa.ingest.extract), check it is not
a copy of a stored story (qa.ingest.dedup), then the engine's ordinary write path (the same as
``POST /v1/documents``: validated, stored atomically in the corpus folder, searchable on return).

A page whose story is already stored under another URL is not stored again: its URL is added to the
stored article's ``other_urls``. The doc_id of a fetched page is ``web_`` and a hash of its URL, so the
same page fetched again replaces its earlier version (or is left alone when nothing changed).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from qa.documents import NewDocument, prepare_document
from qa.engine import Engine
from qa.errors import LIBRARY_ERRORS, FetchError
from qa.index import layout
from qa.ingest.dedup import MinHasher, StoryIndex
from qa.ingest.extract import extract_page
from qa.ingest.fetch import Fetcher, normalize_url
from qa.records import Article

log = logging.getLogger(__name__)

STORIES_FILE = "stories.npz"  # the stored articles' story signatures, in the index folder
Status = Literal["added", "updated", "unchanged", "duplicate", "failed"]


@dataclass(frozen=True)
class PageOutcome:
    url: str
    status: Status
    doc_id: str | None = None  # the stored article (the canonical one for a duplicate)
    title: str = ""
    date: str | None = None
    similarity: float | None = None  # for a duplicate: the estimated Jaccard similarity
    error: str | None = None
    transient: bool = False  # a failure that may pass when tried again (timeout, connection, 5xx)

    def describe(self) -> str:
        if self.status == "failed":
            return f"failed     {self.url}: {self.error}"
        if self.status == "duplicate":
            return (
                f"duplicate  {self.url}: a copy of {self.doc_id} ({self.title}), "
                f"similarity {self.similarity:.2f}; listed on it, not stored again"
            )
        return f"{self.status:<10} {self.url} → {self.doc_id}  {self.title}  {self.date or 'no date'}"


def web_doc_id(url: str) -> str:
    return "web_" + hashlib.sha256(normalize_url(url).encode("utf-8")).hexdigest()[:20]


class PageIngester:
    """Pages into one engine's corpus; one write at a time, so two copies fetched at once are caught."""

    def __init__(self, engine: Engine, fetcher: Fetcher | None = None) -> None:
        self.engine = engine
        s = engine.settings
        self.fetcher = fetcher or Fetcher(s.fetch)
        self.stories = StoryIndex(MinHasher(s.dedup.permutations, s.dedup.shingle_chars), s.dedup.threshold)
        self._stories_file = s.index_dir / STORIES_FILE
        self._lock = threading.Lock()
        with contextlib.suppress(FileNotFoundError):
            self.stories.from_bytes(self._stories_file.read_bytes())

    def close(self) -> None:
        self.fetcher.close()

    def ingest(self, url: str, *, fallback_date: str | None = None) -> PageOutcome:
        """Fetch and store one page; FetchError, QuestionError (nothing to index) or an index error
        otherwise, with the corpus and index as they were."""
        url = normalize_url(url)
        page = self.fetcher.get(url, "page")
        extracted = extract_page(page.body, page.url, fallback_date, page.charset)
        doc = NewDocument(
            doc_id=web_doc_id(page.url),
            text=extracted.text,
            title=extracted.title,
            date=extracted.date,
            url=page.url,
            fetched_at=page.fetched_at,
        )
        s = self.engine.settings
        staged = prepare_document(s.corpus_dir, doc, max_bytes=s.corpus.max_file_bytes).article
        # Under the index's build lock, against the latest version: a copy stored meanwhile by another
        # engine or process (a server worker, `qa watch`) is seen.
        with self._lock, layout.build_lock(s.index_dir):
            articles = self.engine.indexing.latest().index.articles
            known = _holding(articles.values(), page.url, url)
            if known is not None and known.doc_id != doc.doc_id:
                return PageOutcome(url, "duplicate", known.doc_id, known.title, known.date, 1.0)
            previous = articles.get(doc.doc_id)
            if previous is not None and _same(previous, staged):
                return PageOutcome(url, "unchanged", previous.doc_id, previous.title, previous.date)
            if s.dedup.enabled:
                copy = self.stories.find_copy(staged, articles.values())
                self._save_stories()
                if copy is not None:
                    canonical = articles[copy.doc_id]
                    self._list_copy(canonical, page.url)
                    return PageOutcome(
                        url, "duplicate", canonical.doc_id, canonical.title, canonical.date, copy.similarity
                    )
            stored = self.engine.add_document(doc)
        status: Status = "updated" if previous is not None else "added"
        log.info("%s %s as %s (%s, %s)", status, page.url, stored.doc_id, stored.title, stored.date)
        return PageOutcome(url, status, stored.doc_id, stored.title, stored.date)

    def _save_stories(self) -> None:
        """Keep the signatures for the next process (under the build lock: the index's clean-up removes
        temporary files only under it). A failure costs only their computation next time."""
        if not self.stories.changed:
            return
        try:
            with layout.build_lock(self._stories_file.parent):
                layout.write_atomic(self._stories_file, self.stories.to_bytes())
        except OSError as exc:
            log.warning("story signatures not saved: %s", exc)

    def try_ingest(self, url: str, *, fallback_date: str | None = None) -> PageOutcome:
        """:meth:`ingest`, with a failure reported in the outcome instead of raised."""
        try:
            return self.ingest(url, fallback_date=fallback_date)
        except FetchError as exc:
            return PageOutcome(exc.url or url, "failed", error=exc.reason, transient=exc.transient)
        except LIBRARY_ERRORS as exc:
            return PageOutcome(url, "failed", error=str(exc))
        except Exception as exc:  # a page that breaks the extraction must not stop a feed's other items
            log.exception("ingesting %s failed", url)
            return PageOutcome(url, "failed", error=f"unexpected error: {type(exc).__name__}")

    def _list_copy(self, canonical: Article, url: str) -> None:
        """Add ``url`` to the canonical article's other URLs (its text, hence every citation, unchanged)."""
        if url == canonical.url or url in canonical.other_urls:
            return
        self.engine.add_document(
            NewDocument(
                doc_id=canonical.doc_id,
                text=canonical.text,
                title=canonical.title or None,
                date=canonical.date,
                url=canonical.url,
                fetched_at=canonical.fetched_at,
                other_urls=(*canonical.other_urls, url),
            )
        )
        log.info("%s is a copy of %s: listed on it", url, canonical.doc_id)


def _holding(articles: Iterable[Article], *urls: str) -> Article | None:
    """The stored article published at one of ``urls``, or listing it as a copy."""
    for article in articles:
        if article.url in urls or any(u in urls for u in article.other_urls):
            return article
    return None


def _same(one: Article, other: Article) -> bool:
    return (one.text, one.title, one.date) == (other.text, other.title, other.date)
