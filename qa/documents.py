"""Adding, replacing and deleting articles: the corpus folder first (atomically), then the index.

A new article is written as ``<doc_id>.txt`` (a news page) or ``<doc_id>.jsonl`` (one record, when a
title, date or URL come as metadata). The corpus file is written to a temporary file, fsynced and renamed,
then the index is updated incrementally and published atomically. If the process dies in between, the
next start-up's sync (``Engine.build``) brings the index in line with the corpus.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from qa.errors import CorpusError, DocumentNotFoundError, QuestionError
from qa.index import layout
from qa.index.layout import write_atomic
from qa.ingest.loader import decode_source, page_article, valid_doc_id
from qa.ingest.newspage import parse_iso_date, parse_page
from qa.records import Article

SOURCE_SUFFIXES = (".txt", ".md", ".jsonl")


@dataclass(frozen=True)
class NewDocument:
    doc_id: str
    text: str
    title: str | None = None
    date: str | None = None
    url: str | None = None


def check_doc_id(doc_id: str) -> str:
    if not isinstance(doc_id, str) or not valid_doc_id(doc_id):
        raise QuestionError(
            f"invalid doc_id {doc_id!r}: use 1-200 letters, digits, '_', '-' or '.', not starting with a dot"
        )
    return doc_id


def document_from_upload(filename: str, raw: bytes, doc_id: str | None = None) -> NewDocument:
    """An uploaded .txt/.md news page: UTF-8 text, doc_id from the form or the file's name."""
    name = Path(filename or "").name
    stem, suffix = os.path.splitext(name)
    if suffix.lower() not in {".txt", ".md"}:
        raise QuestionError(f"upload a .txt or .md file, got {name!r}")
    text = decode_source(raw, name)
    return NewDocument(doc_id=check_doc_id(doc_id or stem), text=text)


def parse_document(doc: NewDocument) -> Article:
    """The Article a document becomes; QuestionError when nothing indexable is left."""
    check_doc_id(doc.doc_id)
    if not doc.text.strip():
        raise QuestionError("the document text is empty")
    if doc.date is not None and parse_iso_date(doc.date) is None:
        raise QuestionError(f"date must be YYYY-MM-DD, got {doc.date!r}")
    text = doc.text.replace("\r\n", "\n").replace("\r", "\n")
    if doc.title or doc.date or doc.url:
        article = parse_page(
            text,
            doc_id=doc.doc_id,
            source=f"{doc.doc_id}.jsonl#{doc.doc_id}",
            title=doc.title,
            date_iso=parse_iso_date(doc.date),
            url=doc.url,
        )
    else:
        try:
            article = page_article(text, doc.doc_id, f"{doc.doc_id}.txt")
        except CorpusError as exc:
            raise QuestionError(exc.reason) from exc
    if not article.segments:
        raise QuestionError("no article text is left after removing captions and navigation")
    return article


def _source_file(article: Article) -> Path:
    return Path(article.source.split("#", 1)[0])


def write_document(corpus_dir: Path, doc: NewDocument, previous: Article | None) -> Path:
    """Store the document in the corpus folder, replacing the previous version of that doc_id.

    The new file is in place before the old one goes, so a crash in between leaves the document (in one
    version or the other) rather than losing it; the duplicate is removed by the next write of that doc_id.
    """
    corpus_dir.mkdir(parents=True, exist_ok=True)
    if doc.title or doc.date or doc.url:
        record = {"id": doc.doc_id, "title": doc.title, "date": doc.date, "text": doc.text, "url": doc.url}
        target = corpus_dir / f"{doc.doc_id}.jsonl"
        payload = json.dumps(record, ensure_ascii=False) + "\n"
    else:
        target = corpus_dir / f"{doc.doc_id}.txt"
        payload = doc.text
    write_atomic(target, payload.encode("utf-8"))
    if previous is not None and _resolve(corpus_dir, previous) != target.resolve():
        _remove_record(_resolve(corpus_dir, previous), doc.doc_id)
    _remove_leftovers(corpus_dir, doc.doc_id, keep=target)
    return target


def remove_from_corpus(corpus_dir: Path, article: Article) -> None:
    """Delete the article's file, or its line from a bulk JSONL file, and any other file of that doc_id
    an interrupted replacement left behind; never touches files outside the corpus."""
    _remove_record(_resolve(corpus_dir, article), article.doc_id)
    _remove_leftovers(corpus_dir, article.doc_id, keep=None)


def _resolve(corpus_dir: Path, article: Article) -> Path:
    path = _source_file(article)
    resolved = path.resolve() if path.is_absolute() else (corpus_dir / path.name).resolve()
    if corpus_dir.resolve() not in resolved.parents:
        raise DocumentNotFoundError(article.doc_id)
    return resolved


def _remove_leftovers(corpus_dir: Path, doc_id: str, keep: Path | None) -> None:
    """The files ``write_document`` writes for a doc_id (and a page of that name), except ``keep``."""
    for suffix in SOURCE_SUFFIXES:
        path = corpus_dir / f"{doc_id}{suffix}"
        if path.is_file() and (keep is None or path.resolve() != keep.resolve()):
            _remove_record(path.resolve(), doc_id)


def _remove_record(path: Path, doc_id: str) -> None:
    if path.suffix == ".jsonl":
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except FileNotFoundError:
            return
        kept = []
        for line in lines:
            try:
                record = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict) and str(record.get("id")) == doc_id:
                continue
            if line.strip():
                kept.append(line)
        if len(kept) == len([line for line in lines if line.strip()]):
            return  # the record is not in this file
        if kept:
            write_atomic(path, ("\n".join(kept) + "\n").encode("utf-8"))
        else:
            path.unlink(missing_ok=True)
    else:
        path.unlink(missing_ok=True)


def remove_temp_files(corpus_dir: Path) -> int:
    """Temporary files of corpus writes killed before their rename. Call it under the index's build lock,
    which every corpus write of the engine holds."""
    return layout.remove_temp_files(corpus_dir)
