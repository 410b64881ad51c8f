"""Reading ``.npy`` files behind one process-wide lock.

numpy parses every ``.npy`` header with ``ast.literal_eval``. On CPython 3.11 the AST converter keeps
its recursion-depth bookkeeping in per-interpreter state, so two threads parsing at the same moment can
fail with ``SystemError: AST constructor recursion depth mismatch`` (seen in CI: two engines in one
process reloading their snapshots at once). Every load of ours, and bm25s's loads inside
``LexicalIndex.load``, run under this lock; parsing a header takes microseconds, so it costs nothing.
"""

from __future__ import annotations

import mmap
import os
import threading
import weakref
from pathlib import Path
from typing import Any, Literal

import numpy as np

NPY_LOCK = threading.RLock()


def load_npy(path: Path, *, mmap_mode: Literal["r"] | None = None, scattered: bool = False) -> Any:
    """``np.load`` of a plain array (no pickles), serialised with every other load in the process.

    ``scattered``: the mapped array is read a few rows at a time, here and there (vectors re-scored by a
    search), so the kernel is told so (``MADV_RANDOM``): a page it must read from disk comes alone, not
    with 128 kB of read-ahead (20,000 rows read from a cold 1M × 384 fp16 file: 87 MB of it resident in
    the process instead of 604 MB). A file already in the page cache gains nothing: Linux then maps up to
    16 cached neighbours at each fault whatever the advice (fault-around; 604 MB both ways).
    """
    with NPY_LOCK:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    mapped = getattr(array, "_mmap", None)
    if scattered and isinstance(mapped, mmap.mmap) and hasattr(mmap, "MADV_RANDOM"):
        mapped.madvise(mmap.MADV_RANDOM)
    return array


class PreadArray:
    """A mapped ``.npy`` array read with ``pread`` into memory of the caller's, not through its mapping.

    What a question reads here and there of a large file (the hundred rows of a million a search
    re-scores, the postings of its terms) read through a mapping leaves each page and, by Linux's
    fault-around, up to 15 cached neighbours resident in the process, whatever the madvise: after a few
    hundred questions most of the file (1M passages: the fp16 vectors' 732 MB, the postings' 1.1 GB).
    Read with ``pread`` it lands in a buffer that is freed with the answer. Holds one descriptor."""

    def __init__(self, path: Path, mapped: np.memmap[Any, Any]) -> None:
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        weakref.finalize(self, os.close, self._fd)
        self._offset = int(mapped.offset)
        self._shape = tuple(int(n) for n in mapped.shape)
        self._dtype = mapped.dtype
        self._row = int(np.prod(self._shape[1:], dtype=np.int64)) * mapped.dtype.itemsize  # bytes a row

    def _read(self, out: np.ndarray[Any, Any], start_row: int) -> None:
        view = out.data.cast("B")
        if os.preadv(self._fd, [view], self._offset + start_row * self._row) != view.nbytes:
            raise OSError(f"short read at row {start_row}")

    def range(self, start: int, end: int) -> np.ndarray[Any, Any]:
        """Rows ``start:end`` (clipped to the array, as a slice is), in one read."""
        start, end, _ = slice(start, end).indices(self._shape[0])
        out = np.empty((max(0, end - start), *self._shape[1:]), dtype=self._dtype)
        if out.size:
            self._read(out, start)
        return out

    def rows(self, rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The rows ``rows`` (non-negative, below the row count), in that order, one read each."""
        out = np.empty((rows.size, *self._shape[1:]), dtype=self._dtype)
        for i, row in enumerate(rows.tolist()):
            if not 0 <= row < self._shape[0]:
                raise IndexError(f"row {row} of {self._shape[0]}")
            self._read(out[i : i + 1], row)
        return out
