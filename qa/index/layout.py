"""Index folder layout: complete versions in subfolders and a ``CURRENT`` file naming the live one.

A build writes a new version folder, fsyncs every file, then replaces ``CURRENT`` atomically (temporary
file, fsync, rename). A crash at any point leaves ``CURRENT`` naming a complete version, so the previous
index stays loadable. Every file's SHA-256 is in the version's ``manifest.json`` and is checked on load.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qa.errors import IndexCorruptError, IndexStoreError

CURRENT = "CURRENT"
MANIFEST = "manifest.json"
LOCK = ".lock"
FORMAT_VERSION = 1


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


def seal_version(version: Path, manifest: dict[str, Any]) -> None:
    """Checksum and fsync every file of a finished version, then write its manifest last."""
    files = {}
    for path in sorted(p for p in version.rglob("*") if p.is_file()):
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
        files[path.relative_to(version).as_posix()] = sha256_file(path)
    for folder in [version, *(p for p in version.rglob("*") if p.is_dir())]:
        fsync_dir(folder)
    manifest = {**manifest, "format": FORMAT_VERSION, "files": files}
    write_atomic(version / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1).encode())


def publish(index_dir: Path, version: Path) -> None:
    """Make ``version`` the live index, then remove versions nobody points at any more."""
    write_atomic(index_dir / CURRENT, version.name.encode())
    for old in index_dir.glob("v-*"):
        if old.is_dir() and old.name != version.name:
            shutil.rmtree(old, ignore_errors=True)


def current_version(index_dir: Path) -> Path | None:
    pointer = index_dir / CURRENT
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    if not name.startswith("v-") or "/" in name:
        raise IndexCorruptError(f"{pointer} names no index version: {name!r}")
    version = index_dir / name
    if not (version / MANIFEST).is_file():
        raise IndexCorruptError(f"{pointer} points at {version}, which has no manifest")
    return version


def read_manifest(version: Path, *, verify: bool) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((version / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"cannot read {version / MANIFEST}: {exc}") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise IndexStoreError(
            f"index at {version} has format {manifest.get('format')}, this version reads {FORMAT_VERSION}; "
            "run `qa index --rebuild`"
        )
    if verify:
        for name, expected in manifest.get("files", {}).items():
            path = version / name
            if not path.is_file():
                raise IndexCorruptError(f"index file {path} is missing; run `qa index --rebuild`")
            if sha256_file(path) != expected:
                raise IndexCorruptError(
                    f"index file {path} does not match its checksum (truncated or altered); "
                    "run `qa index --rebuild`"
                )
    return manifest


@contextlib.contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """One writer at a time per index folder (other processes wait)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / LOCK, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def remove_stale(index_dir: Path) -> None:
    """Leftovers of builds that crashed: version folders without a manifest, temporary files."""
    live = None
    with contextlib.suppress(IndexStoreError):
        live = current_version(index_dir)
    for path in index_dir.glob("v-*"):
        if path.is_dir() and path != live and not (path / MANIFEST).is_file():
            shutil.rmtree(path, ignore_errors=True)
    for tmp in index_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
