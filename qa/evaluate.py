"""Score the engine on an evaluation file (the format of shared/eval/seed_dev.jsonl).

A passage is a hit when it comes from the record's ``doc`` and contains one of its ``answers`` after NFKC
normalisation — the same rule as the shared scorer. Unanswerable records (no answers) must abstain.
"""

from __future__ import annotations

import json
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa.engine import Engine
from qa.errors import QAError


@dataclass
class EvalRow:
    id: str
    kind: str
    question: str
    answerable_expected: bool
    answerable: bool
    rank: int | None
    top: list[str] = field(default_factory=list)


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "")


def read_eval_file(path: Path) -> list[dict[str, Any]]:
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise QAError(f"{path}:{number}: invalid JSON: {exc.msg}") from exc
            if not isinstance(record, dict) or not isinstance(record.get("question"), str):
                raise QAError(f"{path}:{number}: each line needs a 'question' string")
            records.append(record)
    return records


def evaluate(
    engine: Engine, records: list[dict[str, Any]], top_k: int = 5
) -> tuple[list[EvalRow], dict[str, Any]]:
    rows = []
    for i, rec in enumerate(records):
        history = [h["content"] for h in rec.get("history", []) if h.get("role", "user") == "user"]
        answers = [_norm(a) for a in rec.get("answers") or []]
        # scores retrieval: a configured language model is not asked
        result = engine.ask(rec["question"], history=history, top_k=top_k, write=False)
        rank = None
        for position, hit in enumerate(result.hits, start=1):
            if (
                answers
                and hit.chunk.doc_id == rec.get("doc")
                and any(a in _norm(hit.chunk.text) for a in answers)
            ):
                rank = position
                break
        rows.append(
            EvalRow(
                id=str(rec.get("id", i)),
                kind=str(rec.get("kind", "?")),
                question=rec["question"],
                answerable_expected=bool(answers),
                answerable=result.answerable,
                rank=rank if result.answerable else None,
                top=[f"{h.chunk.doc_id}:{h.chunk.start}-{h.chunk.end}" for h in result.hits[:3]],
            )
        )
    return rows, summarise(rows)


def _metrics(rows: list[EvalRow]) -> dict[str, Any]:
    answerable = [r for r in rows if r.answerable_expected]
    unanswerable = [r for r in rows if not r.answerable_expected]
    n = max(1, len(answerable))
    out: dict[str, Any] = {"n": len(rows)}
    if answerable:
        out["hit@1"] = sum(r.rank == 1 for r in answerable) / n
        out["hit@3"] = sum(r.rank is not None and r.rank <= 3 for r in answerable) / n
        out["mrr"] = sum(1 / r.rank for r in answerable if r.rank) / n
        out["false_abstentions"] = sum(not r.answerable for r in answerable)
    if unanswerable:
        out["abstention_accuracy"] = sum(not r.answerable for r in unanswerable) / len(unanswerable)
    return out


def summarise(rows: list[EvalRow]) -> dict[str, Any]:
    by_kind: dict[str, list[EvalRow]] = defaultdict(list)
    for row in rows:
        by_kind[row.kind].append(row)
    return {"overall": _metrics(rows), "by_kind": {k: _metrics(v) for k, v in sorted(by_kind.items())}}
