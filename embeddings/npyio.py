"""Reading ``.npy`` files behind one process-wide lock.

numpy parses every ``.npy`` header with ``ast.literal_eval``. On CPython 3.11 the AST converter keeps
its recursion-depth bookkeeping in per-interpreter state, so two threads parsing at the same moment can
fail with ``SystemError: AST constructor recursion depth mismatch`` (seen in CI: two engines in one
process reloading their snapshots at once). Every load of ours, and bm25s's loads inside
``LexicalIndex.load``, run under this lock; parsing a header takes microseconds, so it costs nothing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np

NPY_LOCK = threading.RLock()


def load_npy(path: Path, *, mmap_mode: Literal["r"] | None = None) -> Any:
    """``np.load`` of a plain array (no pickles), serialised with every other load in the process."""
    with NPY_LOCK:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
