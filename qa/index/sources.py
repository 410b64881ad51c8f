"""What each corpus file was when the index last read it, so that a re-index parses only changed files.

``sources.json`` in the index folder records, for every file the last build read: its size, mtime,
ctime and inode, the SHA-256 of its bytes, and the articles it gave (doc_id and hash, in order) with the
records it skipped. A file is taken as unchanged, without being read, when all four stat fields are the
recorded ones and it was last changed well before it was recorded (a change within the same timestamp
tick could otherwise pass unseen); when only the stat differs (a copy, a ``touch``), its bytes are
hashed and compared; otherwise, or when the index no longer holds the articles recorded for it, it is
parsed. An edit that keeps size and mtime still changes the ctime, which no program can set back.

The record is a cache, never a source of truth: it is written after the index is published (a crash in
between leaves an older record, whose files then differ or whose articles the index no longer holds),
and one that cannot be read, or was written with other corpus settings, is ignored.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.errors import CorpusError
from qa.index import layout
from qa.index.builder import article_hash
from qa.ingest.loader import Kept, LoadReport, corpus_files, load_file

log = logging.getLogger(__name__)

SOURCES = "sources.json"
RACY_NS = 2_000_000_000  # a file changed this close to its check is hashed again next time


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    sha256: str
    checked_ns: int  # the clock just before the file was looked at
    articles: tuple[tuple[str, str], ...]  # (doc_id, hash) in the file's order
    skipped: tuple[tuple[str, str], ...]  # (path, reason) of each record it skipped

    def stat_matches(self, st: os.stat_result) -> bool:
        return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) == (
            self.size,
            self.mtime_ns,
            self.ctime_ns,
            self.inode,
        )

    def settled(self) -> bool:
        """Changed well before it was checked: a later change would show in mtime or ctime."""
        return max(self.mtime_ns, self.ctime_ns) < self.checked_ns - RACY_NS


def _digest(path: Path) -> str:
    return layout.sha256_file(path)


@dataclass
class Sources:
    """The recorded state of every corpus file, by path relative to the corpus folder."""

    key: str
    files: dict[str, FileState]

    @classmethod
    def read(cls, index_dir: Path, key: str) -> Sources:
        """The record in ``index_dir``; an empty one when there is none, it is unreadable or its key
        (the corpus settings and parser it was made with) is not ``key``."""
        try:
            data = json.loads((index_dir / SOURCES).read_text(encoding="utf-8"))
            if data.get("key") != key:
                return cls(key, {})
            files = {
                name: FileState(
                    int(f["size"]),
                    int(f["mtime_ns"]),
                    int(f["ctime_ns"]),
                    int(f["inode"]),
                    str(f["sha256"]),
                    int(f["checked_ns"]),
                    tuple((str(d), str(h)) for d, h in f["articles"]),
                    tuple((str(p), str(r)) for p, r in f["skipped"]),
                )
                for name, f in data["files"].items()
            }
        except FileNotFoundError:
            return cls(key, {})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring %s: %s", index_dir / SOURCES, exc)
            return cls(key, {})
        return cls(key, files)

    def write(self, index_dir: Path) -> None:
        data: dict[str, Any] = {
            "key": self.key,
            "files": {
                name: {
                    "size": f.size,
                    "mtime_ns": f.mtime_ns,
                    "ctime_ns": f.ctime_ns,
                    "inode": f.inode,
                    "sha256": f.sha256,
                    "checked_ns": f.checked_ns,
                    "articles": [list(a) for a in f.articles],
                    "skipped": [list(s) for s in f.skipped],
                }
                for name, f in sorted(self.files.items())
            },
        }
        layout.write_atomic(index_dir / SOURCES, json.dumps(data, ensure_ascii=False).encode("utf-8"))


def forget(index_dir: Path) -> None:
    """Drop the record (a rebuild starts without one)."""
    (index_dir / SOURCES).unlink(missing_ok=True)


@dataclass
class CorpusRead:
    """A corpus read against the index: the report for the build, and the file states to record once the
    index holds it."""

    report: LoadReport
    states: dict[str, FileState]
    parsed: int  # files read and parsed
    hashed: int  # files read only to compare their hash


def read_corpus(
    directory: Path,
    patterns: Iterable[str],
    max_bytes: int,
    known: Sources,
    stored: Mapping[str, str],
) -> CorpusRead:
    """Every article of the folder, as ``load_corpus`` gives them, except that a file recorded in
    ``known`` that is unchanged (see the module) and whose articles ``stored`` (the live index's doc_id →
    hash) still holds is not parsed: its articles are ``kept``."""
    report = LoadReport()
    states: dict[str, FileState] = {}
    seen: dict[str, str] = {}
    parsed = hashed = 0
    paths, refused = corpus_files(directory, patterns)
    for error in refused:
        log.warning("skipped %s: %s", error.path, error.reason)
        report.skipped.append(error)
    for path in paths:
        name = path.relative_to(directory).as_posix()
        checked = time.time_ns()
        try:
            st = path.stat()
        except OSError:
            st = None
        entry = known.files.get(name)
        usable = (
            st is not None
            and entry is not None
            and all(stored.get(d) == h and d not in seen for d, h in entry.articles)
        )
        if usable and entry is not None and st is not None:
            same = entry.stat_matches(st) and entry.settled()
            if not same and st.st_size == entry.size:
                hashed += 1
                same = _digest(path) == entry.sha256
                if same:
                    entry = FileState(
                        st.st_size,
                        st.st_mtime_ns,
                        st.st_ctime_ns,
                        st.st_ino,
                        entry.sha256,
                        checked,
                        entry.articles,
                        entry.skipped,
                    )
            if same:
                for doc_id, digest in entry.articles:
                    report.kept.append(Kept(doc_id, digest, len(report.articles)))
                    seen[doc_id] = str(path)
                for where, reason in entry.skipped:
                    report.skipped.append(CorpusError(where, reason))
                states[name] = entry
                continue
        parsed += 1
        digest = _digest(path) if st is not None else ""
        articles: list[tuple[str, str]] = []
        skipped: list[tuple[str, str]] = []
        duplicates = False
        for item in load_file(path, max_bytes):
            if isinstance(item, CorpusError):
                log.warning("skipped %s: %s", item.path, item.reason)
                report.skipped.append(item)
                skipped.append((item.path, item.reason))
            elif item.doc_id in seen:
                error = CorpusError(
                    item.source, f"doc_id {item.doc_id!r} already used by {seen[item.doc_id]}"
                )
                log.warning("skipped %s: %s", error.path, error.reason)
                report.skipped.append(error)
                duplicates = True  # which copy wins depends on the other files: never recorded
            else:
                seen[item.doc_id] = item.source
                report.articles.append(item)
                articles.append((item.doc_id, article_hash(item)))
        if st is not None and digest and not duplicates:
            states[name] = FileState(
                st.st_size,
                st.st_mtime_ns,
                st.st_ctime_ns,
                st.st_ino,
                digest,
                checked,
                tuple(articles),
                tuple(skipped),
            )
    return CorpusRead(report, states, parsed, hashed)


def record(index_dir: Path, key: str, read: CorpusRead, indexed: Mapping[str, str]) -> None:
    """Record the files of ``read`` whose articles the index now holds as read (``indexed``: its doc_id →
    hash); the others are left out, and parsed next time."""
    files = {
        name: state
        for name, state in read.states.items()
        if all(indexed.get(d) == h for d, h in state.articles)
    }
    Sources(key, files).write(index_dir)
