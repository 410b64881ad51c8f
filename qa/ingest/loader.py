"""Read a corpus folder (news pages as .txt/.md, bulk .jsonl) into Articles; bad files are reported, never fatal.

Source text is the file decoded as UTF-8 with universal newlines (exactly what Python's ``open()`` returns),
so ``open(path, encoding="utf-8").read()[start:end]`` reproduces every citation.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from qa.errors import CorpusError
from qa.ingest.dates import parse_date
from qa.ingest.newspage import parse_page
from qa.records import Article

log = logging.getLogger(__name__)

DOC_ID = re.compile(r"^[\w][\w.\-]{0,199}$")
_BINARY_SNIFF = 8192


@dataclass(frozen=True)
class Kept:
    """An article known to be stored unchanged in the live index, not parsed again (its file is as it
    was, or a write vouches for it): its doc_id, the hash the index holds, and its place in the corpus
    (how many parsed articles come before it)."""

    doc_id: str
    digest: str
    before: int


@dataclass
class LoadReport:
    articles: list[Article] = field(default_factory=list)
    skipped: list[CorpusError] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)

    def in_order(self, stored: Callable[[Kept], Article]) -> list[Article]:
        """Every article in corpus order, the kept ones read by ``stored``."""
        out: list[Article] = []
        kept = iter(self.kept)
        nxt = next(kept, None)
        for i, article in enumerate([*self.articles, None]):
            while nxt is not None and nxt.before <= i:
                out.append(stored(nxt))
                nxt = next(kept, None)
            if article is not None:
                out.append(article)
        return out


def valid_doc_id(doc_id: str) -> bool:
    """Letters, digits, ``_ - .``; no path separators, no leading dot: safe as a file name."""
    return bool(DOC_ID.fullmatch(doc_id)) and ".." not in doc_id


def decode_source(raw: bytes, path: Path | str) -> str:
    """Bytes → source text, or CorpusError for binary / non-UTF-8 content."""
    if b"\x00" in raw[:_BINARY_SNIFF]:
        raise CorpusError(path, "binary file (NUL bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(path, f"not valid UTF-8 (byte {exc.start})") from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_source(path: Path, max_bytes: int) -> str:
    """The file's text; refused when it is a link (it could point anywhere) or over ``max_bytes``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorpusError(path, "is a symbolic link; corpus files must be regular files") from exc
        raise CorpusError(path, f"cannot read: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as handle:
        try:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise CorpusError(path, f"file is {size} bytes, over the limit of {max_bytes}")
            raw = handle.read()
        except OSError as exc:
            raise CorpusError(path, f"cannot read: {exc.strerror or exc}") from exc
    return decode_source(raw, path)


def page_article(text: str, doc_id: str, source: str) -> Article:
    if not text.strip():
        raise CorpusError(source, "empty file")
    if source.endswith(".md"):
        first = text.lstrip().split("\n", 1)[0]
        title = first.lstrip("#").strip() if first.startswith("#") else None
        article = parse_page(text, doc_id=doc_id, source=source, title=title)
    else:
        article = parse_page(text, doc_id=doc_id, source=source)
    if not article.segments:
        raise CorpusError(source, "no article text left after cleaning")
    return article


def _title_from(body: str) -> str | None:
    """With no title given, a multi-line text starts with its title; a one-line text has none."""
    return None if len([line for line in body.split("\n") if line.strip()]) > 1 else ""


def jsonl_articles(text: str, source: str) -> Iterator[Article | CorpusError]:
    """One article per line: ``{"id", "title", "date", "text", "url"}`` (and, for pages fetched from the
    web, ``fetched_at`` and ``other_urls``: copies of the story stored once); offsets refer to ``text``."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield CorpusError(where, f"invalid JSON: {exc.msg}")
            continue
        if not isinstance(record, dict):
            yield CorpusError(where, "a line must be a JSON object")
            continue
        doc_id, body = record.get("id"), record.get("text")
        if not isinstance(doc_id, str | int) or not valid_doc_id(str(doc_id)):
            yield CorpusError(where, f"missing or invalid 'id': {doc_id!r}")
            continue
        if not isinstance(body, str) or not body.strip():
            yield CorpusError(where, "missing or empty 'text'")
            continue
        title = record.get("title")
        url = record.get("url")
        try:
            article = parse_page(
                body,
                doc_id=str(doc_id),
                source=f"{source}#{doc_id}",
                title=title if isinstance(title, str) and title.strip() else _title_from(body),
                date_iso=parse_date(record.get("date")),
                url=url if isinstance(url, str) else None,
            )
            article = _with_provenance(article, record)
        except Exception as exc:  # a parser bug must not stop the whole import
            yield CorpusError(where, f"cannot parse: {exc}")
            continue
        yield article if article.segments else CorpusError(where, "no article text left after cleaning")


def _with_provenance(article: Article, record: dict[str, object]) -> Article:
    fetched, others = record.get("fetched_at"), record.get("other_urls")
    urls = tuple(u for u in others if isinstance(u, str)) if isinstance(others, list) else ()
    if not isinstance(fetched, str) and not urls:
        return article
    return replace(article, fetched_at=fetched if isinstance(fetched, str) else None, other_urls=urls)


def source_articles(path: Path, text: str) -> Iterator[Article | CorpusError]:
    """The articles of one source file's text: a page (.txt/.md, doc_id = file name) or a bulk .jsonl."""
    if path.suffix.lower() == ".jsonl":
        yield from jsonl_articles(text, str(path))
        return
    try:
        if not valid_doc_id(path.stem):
            raise CorpusError(path, f"file name {path.stem!r} is not a usable doc_id")
        yield page_article(text, path.stem, str(path))
    except CorpusError as exc:
        yield exc


def load_file(path: Path, max_bytes: int) -> Iterator[Article | CorpusError]:
    try:
        text = read_source(path, max_bytes)
    except CorpusError as exc:
        yield exc
        return
    yield from source_articles(path, text)


def corpus_files(directory: Path, patterns: Iterable[str]) -> tuple[list[Path], list[CorpusError]]:
    """The source files of the folder, and the matches refused: a file is read only when it lies in the
    folder itself (a link, or a path through a linked folder, could point anywhere on the machine)."""
    if not directory.is_dir():
        raise CorpusError(directory, "corpus folder does not exist")
    root = directory.resolve()
    files, refused = set(), []
    for path in {p for pattern in patterns for p in directory.glob(pattern)}:
        if path.is_symlink():
            refused.append(CorpusError(path, "is a symbolic link; corpus files must be regular files"))
        elif not inside(root, path):
            refused.append(CorpusError(path, "lies outside the corpus folder (through a linked folder)"))
        elif path.is_file():
            files.add(path)
    return sorted(files), sorted(refused, key=lambda e: e.path)


def inside(root: Path, path: Path) -> bool:
    """``path`` resolves to a place under the (resolved) folder ``root``."""
    return root in path.resolve().parents


def load_corpus(directory: Path, patterns: Iterable[str], max_bytes: int) -> LoadReport:
    """Every article of the folder; each unreadable file or record is in ``skipped`` with its reason."""
    report = LoadReport()
    seen: dict[str, str] = {}
    paths, refused = corpus_files(directory, patterns)
    for error in refused:
        log.warning("skipped %s: %s", error.path, error.reason)
        report.skipped.append(error)
    for path in paths:
        for item in load_file(path, max_bytes):
            if isinstance(item, CorpusError):
                log.warning("skipped %s: %s", item.path, item.reason)
                report.skipped.append(item)
            elif item.doc_id in seen:
                error = CorpusError(
                    item.source, f"doc_id {item.doc_id!r} already used by {seen[item.doc_id]}"
                )
                log.warning("skipped %s: %s", error.path, error.reason)
                report.skipped.append(error)
            else:
                seen[item.doc_id] = item.source
                report.articles.append(item)
    return report
