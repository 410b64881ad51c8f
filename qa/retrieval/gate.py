"""The answer gate: whether the best passage answers the question, as one calibrated probability.

The rules of ``abstain.Grounding`` veto on a single literal signal (a name the passage's neighbourhood
lacks, a word the corpus never uses, a cosine under a floor), so one mis-segmented word or a city written
with 市 in the question and without it in the article abstains on a question the passage answers. The
gate weighs the same signals, softened (names looked for in the passage, its neighbours and its whole
article; years apart), with the ranker's own evidence, in a logistic model fitted on labelled
questions (``benchmarks/fit_gate.py``: answerable and near-miss unanswerable questions over train
articles), and abstains below a threshold chosen there for a target false-abstention rate.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from qa.errors import ConfigError
from qa.index.search_index import SearchIndex
from qa.retrieval.hybrid import Candidate
from qa.retrieval.query import Query
from qa.retrieval.rerank import FEATURES
from qa.text.normalize import fold

GATE_FEATURES = (
    "score",  # the ranker's score of the best passage
    "margin",  # ... minus the second best's
    "dense_lift",  # its cosine with the question minus the mean of the other candidates' (absolute cosines
    # depend on the corpus and the language: e5 gives the seeds' translated pages lower ones than inews)
    "names_local",  # share of the question's names in the passage's neighbourhood (title, neighbours)
    "names_article",  # ... anywhere in its article
    "has_names",  # the question names something
    "year_missing",  # a year the question gives is nowhere in the article
    "words_article",  # share of the question's other words in the article
    "novel",  # the question has a word the corpus never contains
    "coverage",  # the best sentence's share of the question's terms
    "focus_chars",  # its share of the characters of what is asked
    "adjacent",  # an answer of the kind asked for next to a word of what is asked
    "chinese",  # the question is written in Chinese
    "supported_top",  # the best passage misses none of the names (the rules' test)
)

_YEAR = re.compile(r"(?<!\d)(1[89]\d\d|20\d\d)(?!\d)")


@dataclass(frozen=True)
class AnswerGate:
    weights: tuple[float, ...]
    bias: float
    threshold: float  # answer when the probability reaches it
    source: str = ""

    @classmethod
    def load(cls, path: Path) -> AnswerGate:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if tuple(data["features"]) != GATE_FEATURES or tuple(data["ranker_features"]) != FEATURES:
                raise ValueError("fitted on other features than this version computes")
            return cls(
                tuple(float(w) for w in data["weights"]),
                float(data["bias"]),
                float(data["threshold"]),
                str(path),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"cannot use the answer gate {path}: {exc}; refit with benchmarks/fit_gate.py"
            ) from exc

    def probability(self, features: npt.NDArray[np.float64]) -> float:
        z = float(features @ np.asarray(self.weights) + self.bias)
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


def gate_features(
    index: SearchIndex,
    query: Query,
    candidates: Sequence[Candidate],
    context: str,
    missing: Sequence[str],
    novel: bool,
) -> npt.NDArray[np.float64]:
    """The gate's features for the best candidate (``candidates[0]``, reranked, with ``features``);
    ``context`` is its neighbourhood (folded) and ``missing`` what the rules find it lacks."""
    best = candidates[0]
    row = dict(zip(FEATURES, best.features, strict=True)) if best.features else {}
    article = index.articles[index.chunks[best.row].doc_id]
    text = fold(article.title + "\n" + article.text)
    groups = query.entities
    local = sum(any(n in context for n in g) for g in groups) / len(groups) if groups else 1.0
    anywhere = sum(any(n in text for n in g) for g in groups) / len(groups) if groups else 1.0
    years = set(_YEAR.findall(fold(query.question)))
    words = [w for w in query.content_words if len(w) >= 2]
    margin = best.score - candidates[1].score if len(candidates) > 1 else 1.0
    others = [c.dense_score for c in candidates[1:]]
    lift = best.dense_score - sum(others) / len(others) if others else 0.0
    return np.array(
        [
            best.score,
            margin,
            lift,
            local,
            anywhere,
            float(bool(groups)),
            float(any(y not in text for y in years)),
            sum(w in text for w in words) / len(words) if words else 1.0,
            float(novel),
            row.get("coverage", best.coverage),
            row.get("focus_chars", 0.0),
            row.get("adjacent", 0.0),
            float(query.chinese),
            float(not missing),
        ],
        dtype=np.float64,
    )
