"""An article page's HTML → the text to store: title, body (trafilatura's main-text extraction) and the
page's related-news teasers, plus the publication date.

The stored text is laid out like the scraped pages of the corpus, so the news-page cleaning
(qa/ingest/newspage.py) labels it the same way: the title on the first line, the body paragraphs, then
``相关新闻`` and each teaser as its title and summary. Captions, datelines and navigation that survive
the extraction are dropped by that cleaning as in any other page. Citations point into exactly this
text.

The date, first found first: the page's metadata (JSON-LD ``datePublished``, ``<meta>`` publication
dates, ``<time datetime>``), a dateline in the page (``2025年01月21日 15:44``), trafilatura's own date
(htmldate, without its extensive guessing), then the caller's fallback (a feed item's ``published``).
No date found: the article stays undated.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from qa.errors import FetchError
from qa.ingest.dates import dateline_date, parse_date
from qa.ingest.newspage import RELATED_MARKERS
from qa.text.normalize import fold

log = logging.getLogger(__name__)

RELATED_MARKER = "相关新闻"
_RELATED_CLASS = re.compile(r"related|relate[dn]|xgxw|more-?news|recommend|tuijian|相关", re.IGNORECASE)
_META_DATES = (
    "article:published_time",
    "og:published_time",
    "og:article:published_time",
    "datepublished",
    "pubdate",
    "publishdate",
    "publish_date",
    "publication_date",
    "dc.date",
    "dc.date.issued",
    "dcterms.created",
    "sailthru.date",
    "parsely-pub-date",
    "date",
)
_MAX_TEASERS = 30


@dataclass(frozen=True)
class Teaser:
    title: str
    summary: str


@dataclass(frozen=True)
class ExtractedPage:
    url: str
    title: str
    date: str | None
    body: str  # trafilatura's main text
    teasers: tuple[Teaser, ...]

    @property
    def text(self) -> str:
        """The source text to store (see the module's docstring)."""
        parts = [self.title, "", self.body.strip()]
        if self.teasers:
            parts += ["", RELATED_MARKER, ""]
            for teaser in self.teasers:
                parts += [teaser.title, *([teaser.summary] if teaser.summary else []), ""]
        return "\n".join(parts).strip() + "\n"


def _clean(text: str | None) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def _jsonld_dates(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key in ("datePublished", "dateCreated"):
            if isinstance(node.get(key), str):
                yield node[key]
        for value in node.values():
            if isinstance(value, dict | list):
                yield from _jsonld_dates(value)
    elif isinstance(node, list):
        for item in node:
            yield from _jsonld_dates(item)


def metadata_date(tree: Any) -> str | None:
    """The publication date the page's metadata states: JSON-LD, <meta>, <time datetime>."""
    for script in tree.xpath('//script[@type="application/ld+json"]'):
        try:
            data = json.loads(script.text_content() or "null")
        except json.JSONDecodeError:
            continue
        for value in _jsonld_dates(data):
            if (found := parse_date(value)) is not None:
                return found
    metas: dict[str, str] = {}
    for meta in tree.xpath("//meta[@content]"):
        name = (meta.get("property") or meta.get("name") or meta.get("itemprop") or "").strip().lower()
        if name and name not in metas:
            metas[name] = meta.get("content") or ""
    for name in _META_DATES:
        if name in metas and (found := parse_date(metas[name])) is not None:
            return found
    for node in tree.xpath("//time[@datetime]"):
        if (found := parse_date(node.get("datetime"))) is not None:
            return found
    return None


_NEAR_TITLE = 60  # elements after the headline searched for its dateline


def page_dateline(tree: Any) -> str | None:
    """The article's dateline (``2025年01月21日 15:44``): the first element after the headline (the
    first ``<h1>``; without one, in ``<article>`` or ``<main>``) whose own text is only a dateline. Not
    anywhere on the page: portals print today's date in their header, and teasers carry theirs."""
    heads = tree.xpath("//body//h1")
    if heads:
        near = heads[0].xpath("following::*[not(self::script or self::style)]")
    else:
        near = tree.xpath("(//article | //main)[1]//*[not(self::script or self::style)]")
    for element in near[:_NEAR_TITLE]:
        text = _clean(element.text)
        if text and len(text) <= 80 and (found := dateline_date(text)) is not None:
            return found
    return None


def _is_marker(text: str) -> bool:
    return re.sub(r"\s+", "", fold(text)) in RELATED_MARKERS


def related_blocks(tree: Any) -> list[Any]:
    """Containers of related-news teasers: a class or id that says so, or a heading ``相关新闻``."""
    blocks: list[Any] = []
    for element in tree.xpath("//body//*[@class or @id]"):
        if _RELATED_CLASS.search(f"{element.get('class', '')} {element.get('id', '')}"):
            blocks.append(element)
    for element in tree.xpath(
        "//body//*[self::h2 or self::h3 or self::h4 or self::div or self::p or self::span]"
    ):
        if len(element) == 0 and _is_marker(element.text_content() or ""):
            parent = element.getparent()
            if parent is not None and parent.tag != "body":
                blocks.append(parent)
    unique = list({id(b): b for b in blocks}.values())
    # outermost only: a block inside another is part of it
    return [b for b in unique if not any(o is not b and b in o.iterdescendants() for o in unique)]


def teasers_of(block: Any) -> list[Teaser]:
    items = block.xpath(".//li") or block.xpath(".//*[self::article or self::div][.//a]") or [block]
    teasers: list[Teaser] = []
    seen: set[str] = set()
    for item in items:
        for link in item.xpath(".//a") if item is block else item.xpath(".//a")[:1]:
            title = _clean(link.text_content())
            if not title or _is_marker(title) or title in seen:
                continue
            seen.add(title)
            summary = ""
            if item is not block:
                paragraphs = [_clean(p.text_content()) for p in item.xpath(".//p")]
                summary = next((p for p in paragraphs if p and p != title), "")
            teasers.append(Teaser(title, summary))
    return teasers[:_MAX_TEASERS]


def decode_html(html: bytes, charset: str | None) -> str | bytes:
    """The page as text in the charset its response declares, when that decodes it cleanly; else the
    bytes, for trafilatura to detect the encoding (``<meta charset>``, then the content: GBK pages are
    common)."""
    if charset:
        try:
            return html.decode(charset)
        except (LookupError, UnicodeDecodeError):
            log.debug("the declared charset %r does not decode the page; detecting it", charset)
    return html


def extract_page(
    html: bytes, url: str, fallback_date: str | None = None, charset: str | None = None
) -> ExtractedPage:
    """Title, date, body and teasers of an article page; FetchError when no article text is found."""
    import trafilatura
    from trafilatura.utils import load_html

    tree = load_html(decode_html(html, charset))
    if tree is None:
        raise FetchError(url, "the page is not readable HTML")
    date = metadata_date(tree)
    teasers: list[Teaser] = []
    for block in related_blocks(tree):
        teasers += [t for t in teasers_of(block) if t not in teasers]
        block.drop_tree()  # the teasers are not the article's body (nor are their dates its date)
    date = date or page_dateline(tree)
    document = trafilatura.bare_extraction(
        tree,
        url=url,
        with_metadata=True,
        include_comments=False,
        include_tables=True,
        favor_recall=True,
        date_extraction_params={"extensive_search": False, "original_date": True},
    )
    body = getattr(document, "text", None) or ""
    if not body.strip():
        raise FetchError(url, "no article text found on the page")
    title = _clean(getattr(document, "title", None)) or body.strip().split("\n", 1)[0][:80]
    date = date or parse_date(getattr(document, "date", None)) or fallback_date
    return ExtractedPage(url=url, title=title, date=date, body=body, teasers=tuple(teasers[:_MAX_TEASERS]))
