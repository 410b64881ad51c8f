"""Reading ``.npy`` files behind one process-wide lock.

numpy parses every ``.npy`` header with ``ast.literal_eval``. On CPython 3.11 the AST converter keeps
its recursion-depth bookkeeping in per-interpreter state, so two threads parsing at the same moment can
fail with ``SystemError: AST constructor recursion depth mismatch`` (seen in CI: two engines in one
process reloading their snapshots at once). Every load of ours, and bm25s's loads inside
``LexicalIndex.load``, run under this lock; parsing a header takes microseconds, so it costs nothing.
"""

from __future__ import annotations

import mmap
import threading
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
