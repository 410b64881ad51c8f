"""Check a labelled question file against its corpus: the format score.py reads, and labels that hold.

usage: python benchmarks/check_questions.py QUESTIONS.jsonl CORPUS.jsonl [--min-id 2000 --max-id 3999]

Every answerable question names its article (``doc``), which must be in the corpus (and inside the id
range, when one is given); every answer string must occur in that article's text after NFKC (a cited
passage is a slice of the text; the title is not in it); an
unanswerable question has ``answers: []`` and ``doc: null``; a follow-up has a ``history``. Exit status 1
and one line per problem when anything is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from pathlib import Path

KINDS = {
    "factoid",
    "paraphrase",
    "related",
    "traditional",
    "cross-lingual",
    "entity-variant",
    "follow-up",
    "unanswerable",
}


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def load_corpus(path: Path) -> dict[str, str]:
    docs = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                docs[record["id"]] = nfkc(record["text"])  # passages are slices of the text, never the title
    return docs


def number(doc_id: str) -> int:
    return int(doc_id.rsplit("-", 1)[1])


def problems(questions: Path, docs: dict[str, str], min_id: int | None, max_id: int | None) -> list[str]:
    out: list[str] = []
    ids: set[str] = set()
    with open(questions, encoding="utf-8") as handle:
        for n, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{questions.name}:{n}"
            try:
                q = json.loads(line)
            except json.JSONDecodeError as exc:
                out.append(f"{where}: invalid JSON: {exc}")
                continue
            qid, kind = q.get("id"), q.get("kind")
            if not isinstance(qid, str) or qid in ids:
                out.append(f"{where}: missing or repeated id {qid!r}")
            ids.add(str(qid))
            if kind not in KINDS:
                out.append(f"{where}: unknown kind {kind!r}")
            if not isinstance(q.get("question"), str) or not q["question"].strip():
                out.append(f"{where}: no question")
            answers, doc = q.get("answers"), q.get("doc")
            if not isinstance(answers, list):
                out.append(f"{where}: answers must be a list")
                continue
            if kind == "unanswerable":
                if answers or doc is not None:
                    out.append(f"{where}: an unanswerable question has answers [] and doc null")
                continue
            if not answers or doc not in docs:
                out.append(f"{where}: needs answers and a doc of the corpus (got {doc!r})")
                continue
            if (min_id is not None and number(doc) < min_id) or (max_id is not None and number(doc) > max_id):
                out.append(f"{where}: {doc} is outside the allowed id range")
            for answer in answers:
                if not isinstance(answer, str) or not answer.strip() or nfkc(answer) not in docs[doc]:
                    out.append(f"{where}: answer {answer!r} is not in {doc}")
            history = q.get("history")
            if kind == "follow-up" and not history:
                out.append(f"{where}: a follow-up needs a history")
            if history is not None and not (
                isinstance(history, list)
                and all(isinstance(h, dict) and h.get("role") == "user" and h.get("content") for h in history)
            ):
                out.append(f"{where}: history must be [{{'role': 'user', 'content': ...}}, ...]")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("questions", type=Path)
    p.add_argument("corpus", type=Path)
    p.add_argument("--min-id", type=int)
    p.add_argument("--max-id", type=int)
    args = p.parse_args()
    found = problems(args.questions, load_corpus(args.corpus), args.min_id, args.max_id)
    for line in found:
        print(line)
    print(f"{len(found)} problems", file=sys.stderr)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
