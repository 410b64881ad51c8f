"""Index folder layout: immutable segments, versions that name them, and a ``CURRENT`` file naming the
live version.

A segment (``segments/s-…/``) holds the tables and passages of some articles; once sealed it never
changes. Its ``segment.json`` lists the SHA-256 of each of its files. A version (``v-…/manifest.json``)
is the index at one moment: the segments it is made of, in order, with the articles of each that are
dead (deleted, or replaced by a copy in a later segment), and the SHA-256 of each segment's
``segment.json``. A write seals a new small segment, then a new version naming it and the old ones,
then replaces ``CURRENT`` atomically (temporary file, fsync, rename). A crash at any point leaves
``CURRENT`` naming a complete version, so the previous index stays loadable. ``CURRENT`` holds the
version's name and the SHA-256 of its manifest, so the whole chain down to every file is checked on load.

Writers (builds, document adds and deletes) take ``build_lock``: one at a time per index folder, across
threads and processes. Readers take no lock: versions are immutable once published, and a reader that
loses the race with a publish (its version removed while it reads) simply reads ``CURRENT`` again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from qa.errors import IndexCorruptError, IndexFormatError, IndexStoreError

CURRENT = "CURRENT"
MANIFEST = "manifest.json"
SEGMENTS = "segments"
SEGMENT_FILE = "segment.json"
LOCK = ".lock"
# 6: each passage's people and places stored (5: titles and their tokens stored, 4: vocabularies in
# hash order, 3: tables as mapped arrays, 2: JSONL tables, 1: before segments)
FORMAT_VERSION = 6
SEGMENT_NAME = re.compile(r"s-[\w-]+")
TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")  # what write_atomic leaves behind when killed


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_version_dir(index_dir: Path) -> Path:
    index_dir.mkdir(parents=True, exist_ok=True)
    path = index_dir / f"v-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def new_segment_dir(index_dir: Path) -> Path:
    (index_dir / SEGMENTS).mkdir(parents=True, exist_ok=True)
    path = index_dir / SEGMENTS / f"s-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
    path.mkdir()
    return path


def segment_dir(index_dir: Path, name: str) -> Path:
    if not SEGMENT_NAME.fullmatch(name):
        raise IndexCorruptError(f"{name!r} names no segment; run `qa index --rebuild`")
    return index_dir / SEGMENTS / name


def _fsync_tree(folder: Path) -> dict[str, str]:
    """Fsync every file and folder under ``folder``; the files' SHA-256 by relative path."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
        files[path.relative_to(folder).as_posix()] = sha256_file(path)
    for sub in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        fsync_dir(sub)
    return files


def seal_segment(folder: Path, meta: dict[str, Any]) -> str:
    """Checksum and fsync every file of a finished segment, then write its ``segment.json`` last.
    Returns the SHA-256 of ``segment.json``, which the versions naming the segment record."""
    files = _fsync_tree(folder)
    record = {**meta, "format": FORMAT_VERSION, "files": files}
    write_atomic(folder / SEGMENT_FILE, json.dumps(record, ensure_ascii=False, indent=1).encode())
    return sha256_file(folder / SEGMENT_FILE)


def seal_version(version: Path, manifest: dict[str, Any]) -> None:
    """Write a finished version's manifest (it names its segments; the folder holds nothing else)."""
    files = _fsync_tree(version)
    manifest = {**manifest, "format": FORMAT_VERSION, "files": files}
    write_atomic(version / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1).encode())


def publish(index_dir: Path, version: Path, segments: Iterable[str]) -> None:
    """Make ``version`` (made of ``segments``) the live index, then remove the versions and segments it
    does not name. A reader that had opened them keeps its open files; one that had not yet retries on
    the version ``CURRENT`` names now."""
    pointer = f"{version.name}\n{sha256_file(version / MANIFEST)}\n"
    write_atomic(index_dir / CURRENT, pointer.encode())
    for old in index_dir.glob("v-*"):
        if old.is_dir() and old.name != version.name:
            shutil.rmtree(old, ignore_errors=True)
    _remove_segments(index_dir, keep=set(segments))


def _remove_segments(index_dir: Path, keep: set[str], *, unsealed_only: bool = False) -> None:
    for path in (index_dir / SEGMENTS).glob("s-*"):
        if not path.is_dir() or path.name in keep:
            continue
        if not unsealed_only or not (path / SEGMENT_FILE).is_file():
            shutil.rmtree(path, ignore_errors=True)


def read_pointer(index_dir: Path) -> tuple[str, str | None] | None:
    """What ``CURRENT`` says: the live version's name and its manifest's SHA-256 (None in a pointer
    written before the checksum was recorded); None when there is no index yet."""
    pointer = index_dir / CURRENT
    try:
        raw = pointer.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IndexCorruptError(f"cannot read {pointer}: {exc}; run `qa index --rebuild`") from exc
    try:
        lines = raw.decode("utf-8").split()
    except UnicodeDecodeError:
        lines = []
    name = lines[0] if lines else ""
    digest = lines[1] if len(lines) > 1 else None
    if (
        len(lines) > 2
        or not re.fullmatch(r"v-[\w-]+", name)
        or (digest is not None and not re.fullmatch(r"[0-9a-f]{64}", digest))
    ):
        raise IndexCorruptError(f"{pointer} names no index version: {raw[:200]!r}; run `qa index --rebuild`")
    return name, digest


def current_version(index_dir: Path) -> Path | None:
    """The live version folder (its manifest present and matching ``CURRENT``); None when there is none."""
    pointer = read_pointer(index_dir)
    return None if pointer is None else pointed_version(index_dir, pointer)


def pointed_version(index_dir: Path, pointer: tuple[str, str | None]) -> Path:
    """The version folder a pointer read by ``read_pointer`` names, checked against its manifest."""
    name, digest = pointer
    version = index_dir / name
    if not (version / MANIFEST).is_file():
        raise IndexCorruptError(
            f"{index_dir / CURRENT} points at {version}, which has no manifest; run `qa index --rebuild`"
        )
    if digest is not None:
        try:
            actual = sha256_file(version / MANIFEST)
        except OSError as exc:
            raise IndexCorruptError(
                f"cannot read {version / MANIFEST}: {exc}; run `qa index --rebuild`"
            ) from exc
        if actual != digest:
            raise IndexCorruptError(
                f"{version / MANIFEST} does not match the checksum in {index_dir / CURRENT} "
                "(truncated or altered); run `qa index --rebuild`"
            )
    return version


def _read_listing(folder: Path, name: str, *, verify: bool) -> dict[str, Any]:
    """A manifest or segment record: its JSON, its format checked, its files checked when ``verify``."""
    path = folder / name
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"cannot read {path}: {exc}; run `qa index --rebuild`") from exc
    if not isinstance(record, dict):
        raise IndexCorruptError(f"{path} is not a manifest; run `qa index --rebuild`")
    if record.get("format") != FORMAT_VERSION:
        raise IndexFormatError(
            f"index at {folder} has format {record.get('format')}, this version reads {FORMAT_VERSION}; "
            "run `qa index` (the embeddings are reused)"
        )
    files = record.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(name, str) and isinstance(digest, str) for name, digest in files.items()
    ):
        raise IndexCorruptError(f"{path} lists no files; run `qa index --rebuild`")
    for name in files:
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts:
            raise IndexCorruptError(
                f"{path} lists a file outside the index: {name!r}; run `qa index --rebuild`"
            )
    if verify:
        for name, expected in files.items():
            file = folder / name
            if not file.is_file():
                raise IndexCorruptError(f"index file {file} is missing; run `qa index --rebuild`")
            if sha256_file(file) != expected:
                raise IndexCorruptError(
                    f"index file {file} does not match its checksum (truncated or altered); "
                    "run `qa index --rebuild`"
                )
    return record


def read_manifest(version: Path, *, verify: bool) -> dict[str, Any]:
    return _read_listing(version, MANIFEST, verify=verify)


def read_segment(folder: Path, seal: str, *, verify: bool) -> dict[str, Any]:
    """A segment's record, checked against the SHA-256 its version recorded, and its files when
    ``verify``."""
    try:
        actual = sha256_file(folder / SEGMENT_FILE)
    except OSError as exc:
        raise IndexCorruptError(f"segment {folder} cannot be read: {exc}; run `qa index --rebuild`") from exc
    if actual != seal:
        raise IndexCorruptError(
            f"{folder / SEGMENT_FILE} does not match the checksum its version recorded "
            "(truncated or altered); run `qa index --rebuild`"
        )
    return _read_listing(folder, SEGMENT_FILE, verify=verify)


def manifest_segments(manifest: dict[str, Any]) -> list[str]:
    """The names of the segments a manifest (as read by ``read_manifest``) is made of."""
    entries = manifest.get("segments")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) and SEGMENT_NAME.fullmatch(e["name"])
        for e in entries
    ):
        raise IndexCorruptError("the manifest names no segments; run `qa index --rebuild`")
    return [e["name"] for e in entries]


class _DirLock:
    """The holder of one index folder's lock in this process: a thread lock, then ``flock`` on ``.lock``."""

    def __init__(self) -> None:
        self.thread_lock = threading.RLock()
        self.depth = 0
        self.handle: Any = None


_DIR_LOCKS: dict[str, _DirLock] = {}
_DIR_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """One writer at a time per index folder: other threads and other processes wait.

    Re-entrant within a thread, so an engine can hold it across a corpus write and the index update
    that follows (``build_index`` takes it again).
    """
    index_dir.mkdir(parents=True, exist_ok=True)
    key = str(index_dir.resolve())
    with _DIR_LOCKS_GUARD:
        entry = _DIR_LOCKS.setdefault(key, _DirLock())
    with entry.thread_lock:
        if entry.depth == 0:
            handle = open(index_dir / LOCK, "a+")  # noqa: SIM115 - held until the outermost exit
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            except BaseException:
                handle.close()
                raise
            entry.handle = handle
        entry.depth += 1
        try:
            yield
        finally:
            entry.depth -= 1
            if entry.depth == 0:
                handle, entry.handle = entry.handle, None
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
                finally:
                    handle.close()


def remove_temp_files(folder: Path) -> int:
    """Delete the temporary files ``write_atomic`` leaves when a process dies before its rename.

    Only call it while holding the lock every writer of ``folder`` takes. Returns how many were removed.
    """
    removed = 0
    if folder.is_dir():
        for path in folder.rglob(".*.tmp"):
            if TEMP_FILE.match(path.name) and path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def remove_stale(index_dir: Path) -> None:
    """Leftovers of builds that crashed: versions that are not live (half-written, sealed but never
    published, or half-removed by an interrupted publish), segments the live version does not name, and
    temporary files. Call it under ``build_lock``.
    """
    live = None
    unreadable = False
    keep: set[str] = set()
    try:
        live = current_version(index_dir)
        if live is not None:
            keep = set(manifest_segments(read_manifest(live, verify=False)))
    except IndexStoreError:
        unreadable = True  # keep complete versions: one of them may be what the damaged pointer meant
    for path in index_dir.glob("v-*"):
        if not path.is_dir() or path == live:
            continue
        if not unreadable or not (path / MANIFEST).is_file():
            shutil.rmtree(path, ignore_errors=True)
    _remove_segments(index_dir, keep, unsealed_only=unreadable)
    for tmp in index_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    for folder in index_dir.iterdir():
        if folder.is_dir() and not folder.name.startswith("v-") and folder.name != SEGMENTS:
            remove_temp_files(folder)  # e.g. the embedding cache
