"""One copy of a story per answer: a body passage whose text another article's body passage already
says word for word (the same wire story stored twice, e.g. imported before ingestion caught the copy)
is dropped, so an answer never cites two copies of one story side by side."""

from __future__ import annotations

import re

from qa.index.search_index import SearchIndex
from qa.records import Section
from qa.retrieval.hybrid import Candidate
from qa.text.normalize import fold

_SPACE = re.compile(r"\s+")


def one_copy(candidates: list[Candidate], index: SearchIndex) -> list[Candidate]:
    kept: list[Candidate] = []
    said: dict[str, str] = {}  # folded body passage text → the doc_id that said it first
    for cand in candidates:
        chunk = index.chunks[cand.row]
        if chunk.section is Section.BODY:
            key = _SPACE.sub("", fold(chunk.text))
            first = said.setdefault(key, chunk.doc_id)
            if first != chunk.doc_id:
                continue
        kept.append(cand)
    return kept
