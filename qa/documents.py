"""Adding, replacing and deleting articles: validated in full first, then the corpus folder (atomically,
with the old contents kept to restore), then the index.

A new article is written as ``<doc_id>.txt`` (a news page) or ``<doc_id>.jsonl`` (one record, when a
title, date or URL come as metadata, or when ``<doc_id>`` is too long to be a file name: then the file is
named by a hash and the id is kept in the record). ``prepare_document`` turns a request into the exact
bytes that will be stored and parses those bytes with the corpus loader itself, so a document is refused
before anything is touched, and what is accepted is what every later load reads. The write returns a
``CorpusChange`` that puts every touched file back as it was if the index update then fails. If the
process dies in between, the next start-up's sync (``Engine.build``) brings the index in line with the
corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from qa.errors import CorpusError, DocumentNotFoundError, QuestionError
from qa.index import layout
from qa.index.layout import fsync_dir, write_atomic
from qa.ingest.loader import decode_source, inside, source_articles, valid_doc_id
from qa.ingest.newspage import parse_iso_date
from qa.records import Article

SOURCE_SUFFIXES = (".txt", ".md", ".jsonl")
# A corpus file's name in bytes; with write_atomic's temporary affix (38 bytes) it stays under the
# 255-byte limit of common file systems. A longer doc_id is stored under a hashed name.
MAX_NAME_BYTES = 200


@dataclass(frozen=True)
class NewDocument:
    doc_id: str
    text: str
    title: str | None = None
    date: str | None = None
    url: str | None = None
    fetched_at: str | None = None  # a page fetched from the web: when (ISO, UTC)
    other_urls: tuple[str, ...] = ()  # where copies of the story were also published

    @property
    def has_metadata(self) -> bool:
        return bool(self.title or self.date or self.url or self.fetched_at or self.other_urls)


@dataclass(frozen=True)
class StagedDocument:
    """A document as it will be stored: its corpus file, the file's bytes and the article they load as."""

    path: Path
    payload: bytes
    article: Article


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
        raise QuestionError(f"upload a .txt or .md file, got {name[:200]!r}")
    text = decode_source(raw, name)  # CorpusError: binary or not UTF-8
    return NewDocument(doc_id=check_doc_id(doc_id or stem), text=text)


def corpus_stem(doc_id: str) -> str:
    """The file name (without suffix) of a doc_id's own file: the doc_id itself when it fits, else a
    readable prefix and a hash. ``~`` is never in a doc_id, so a hashed name never names another one."""
    if len(doc_id.encode("utf-8")) + len(".jsonl") <= MAX_NAME_BYTES:
        return doc_id
    prefix = doc_id.encode("utf-8")[:80].decode("utf-8", "ignore")
    return f"{prefix}~{hashlib.sha256(doc_id.encode('utf-8')).hexdigest()[:32]}"


def _encode(corpus_dir: Path, doc: NewDocument) -> tuple[Path, bytes]:
    stem = corpus_stem(doc.doc_id)
    text = doc.text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        if doc.has_metadata or stem != doc.doc_id:
            record: dict[str, object] = {
                "id": doc.doc_id,
                "title": doc.title,
                "date": doc.date,
                "text": text,
                "url": doc.url,
            }
            if doc.fetched_at or doc.other_urls:
                record.update(fetched_at=doc.fetched_at, other_urls=list(doc.other_urls))
            return corpus_dir / f"{stem}.jsonl", (json.dumps(record, ensure_ascii=False) + "\n").encode()
        return corpus_dir / f"{stem}.txt", text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate (JSON allows "\ud800")
        raise QuestionError(f"the document has a character that is not valid Unicode at {exc.start}") from exc


def prepare_document(corpus_dir: Path, doc: NewDocument, *, max_bytes: int) -> StagedDocument:
    """Validate ``doc`` completely, touching nothing: QuestionError unless the bytes that will be stored
    load back, through the corpus loader, as an article with text to index."""
    check_doc_id(doc.doc_id)
    if not doc.text.strip():
        raise QuestionError("the document text is empty")
    if "\x00" in doc.text:
        raise QuestionError("the document text contains NUL characters (binary data)")
    if doc.date is not None and parse_iso_date(doc.date) is None:
        raise QuestionError(f"date must be YYYY-MM-DD, got {doc.date!r}")
    path, payload = _encode(corpus_dir, doc)
    if len(payload) > max_bytes:
        raise QuestionError(
            f"the stored document would be {len(payload)} bytes, over the limit of {max_bytes}"
        )
    found = list(source_articles(path, decode_source(payload, path.name)))
    article = next((a for a in found if isinstance(a, Article) and a.doc_id == doc.doc_id), None)
    if article is None:
        errors = [e.reason for e in found if isinstance(e, CorpusError)]
        raise QuestionError(errors[0] if errors else "the document has no indexable text")
    if not article.segments:
        raise QuestionError("no article text is left after removing captions and navigation")
    return StagedDocument(path, payload, article)


@dataclass
class CorpusChange:
    """The files one write touched, with what each held before (None: it did not exist)."""

    before: dict[Path, bytes | None] = field(default_factory=dict)

    def _keep(self, path: Path) -> None:
        if path not in self.before:
            try:
                self.before[path] = path.read_bytes()
            except FileNotFoundError:
                self.before[path] = None

    def write(self, path: Path, data: bytes) -> None:
        self._keep(path)
        write_atomic(path, data)

    def remove(self, path: Path) -> None:
        self._keep(path)
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)

    def restore(self) -> None:
        """Put every touched file back as it was, the last one touched first."""
        for path, data in reversed(self.before.items()):
            if data is None:
                path.unlink(missing_ok=True)
                fsync_dir(path.parent)
            else:
                write_atomic(path, data)


def write_document(corpus_dir: Path, staged: StagedDocument, previous: Article | None) -> CorpusChange:
    """Store the document in the corpus folder, replacing the previous version of that doc_id.

    The new file is in place before the old one goes, so a crash in between leaves the document (in one
    version or the other) rather than losing it; the duplicate is removed by the next write of that doc_id.
    """
    corpus_dir.mkdir(parents=True, exist_ok=True)
    change = CorpusChange()
    doc_id = staged.article.doc_id
    try:
        change.write(staged.path, staged.payload)
        if previous is not None:
            old = _resolve(corpus_dir, previous)
            if old != staged.path.resolve():
                _remove_record(change, old, doc_id)
        _remove_leftovers(change, corpus_dir, doc_id, keep=staged.path)
    except BaseException:
        change.restore()
        raise
    return change


def remove_from_corpus(corpus_dir: Path, article: Article) -> CorpusChange:
    """Delete the article's file, or its line from a bulk JSONL file, and any other file of that doc_id
    an interrupted replacement left behind; never touches files outside the corpus."""
    change = CorpusChange()
    try:
        _remove_record(change, _resolve(corpus_dir, article), article.doc_id)
        _remove_leftovers(change, corpus_dir, article.doc_id, keep=None)
    except BaseException:
        change.restore()
        raise
    return change


def _resolve(corpus_dir: Path, article: Article) -> Path:
    path = Path(article.source.split("#", 1)[0])
    resolved = path.resolve() if path.is_absolute() else (corpus_dir / path.name).resolve()
    if not inside(corpus_dir.resolve(), resolved):
        raise DocumentNotFoundError(article.doc_id)
    return resolved


def _remove_leftovers(change: CorpusChange, corpus_dir: Path, doc_id: str, keep: Path | None) -> None:
    """The files ``write_document`` writes for a doc_id (and a page of that name), except ``keep``;
    a link is never followed (the loader does not read links either)."""
    root = corpus_dir.resolve()
    for suffix in SOURCE_SUFFIXES:
        path = corpus_dir / f"{corpus_stem(doc_id)}{suffix}"
        if path.is_symlink() or not path.is_file() or not inside(root, path):
            continue
        if keep is None or path.resolve() != keep.resolve():
            _remove_record(change, path.resolve(), doc_id)


def _remove_record(change: CorpusChange, path: Path, doc_id: str) -> None:
    if path.suffix != ".jsonl":
        change.remove(path)
        return
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
        change.write(path, ("\n".join(kept) + "\n").encode("utf-8"))
    else:
        change.remove(path)


def remove_temp_files(corpus_dir: Path) -> int:
    """Temporary files of corpus writes killed before their rename. Call it under the index's build lock,
    which every corpus write of the engine holds."""
    return layout.remove_temp_files(corpus_dir)
