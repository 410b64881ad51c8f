"""What `qa ingest URL… / --feed URL` and `qa watch` do, apart from the command line: ingest, report
every page and feed on one line each (failures with their reason), and say whether all went well."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from qa.config import Settings
from qa.documents import NewDocument, prepare_document
from qa.engine import Engine
from qa.errors import LIBRARY_ERRORS
from qa.ingest.chunker import chunk_article
from qa.ingest.dedup import MinHasher, StoryIndex
from qa.ingest.extract import extract_page
from qa.ingest.fetch import Fetcher, normalize_url
from qa.ingest.loader import load_corpus
from qa.live.pages import PageIngester, web_doc_id
from qa.live.poller import FeedPoller, FeedReport
from qa.records import Section

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


def preview(settings: Settings, urls: Sequence[str], say: Say) -> bool:
    """``qa ingest --dry-run URL…``: fetch and extract each page and say what would be stored (title,
    date, body and teaser segments, passages, a copy of which stored article), storing nothing."""
    corpus = load_corpus(settings.corpus_dir, settings.corpus.patterns, settings.corpus.max_file_bytes)
    d = settings.dedup
    stories = StoryIndex(MinHasher(d.permutations, d.shingle_chars), d.threshold)
    ok = True
    with Fetcher(settings.fetch) as fetcher:
        for url in urls:
            try:
                page = fetcher.get(normalize_url(url), "page")
                extracted = extract_page(page.body, page.url, charset=page.charset)
                doc = NewDocument(
                    web_doc_id(page.url), extracted.text, extracted.title, extracted.date, page.url
                )
                article = prepare_document(
                    settings.corpus_dir, doc, max_bytes=settings.corpus.max_file_bytes
                ).article
            except LIBRARY_ERRORS as exc:
                ok = False
                say(f"failed     {url}: {getattr(exc, 'reason', exc)}")
                continue
            body = sum(seg.section is Section.BODY for seg in article.segments)
            passages = len(chunk_article(article, **settings.chunking.kwargs()))
            copy = stories.find_copy(article, corpus.articles) if d.enabled else None
            say(
                f"would add  {page.url} → {article.doc_id}  {article.title}  {article.date or 'no date'}: "
                f"{body} body and {len(article.segments) - body} teaser segments, {passages} passages"
                + (
                    f"; a copy of {copy.doc_id} (similarity {copy.similarity:.2f}): not stored"
                    if copy
                    else ""
                )
            )
    return ok


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
