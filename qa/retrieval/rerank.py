"""Passage-level evidence added to the fused score of the top candidates.

- coverage: the share of the question's terms (IDF-weighted) found together in one sentence of the
  passage; an answer usually sits in the sentence that repeats the question's words;
- answer type: a question asking who / how many / when / where is better served by a passage that
  holds a person, number, date or place the question itself does not already name.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from enum import Enum
from functools import lru_cache

from qa.index.search_index import SearchIndex
from qa.retrieval.hybrid import Candidate
from qa.text.normalize import SENTENCE, fold
from qa.text.tokenize import ChineseTokenizer


class AnswerType(Enum):
    PERSON = "person"
    NUMBER = "number"
    DATE = "date"
    PLACE = "place"


_TYPE_PATTERNS: list[tuple[AnswerType, re.Pattern[str]]] = [
    (
        AnswerType.DATE,
        re.compile(
            r"什么时候|何时|哪一?天|哪一?年|几月|几号|什么时间|多久|\bwhen\b|khi nào|bao giờ|năm nào|ngày nào"
        ),
    ),
    (AnswerType.PERSON, re.compile(r"谁|哪位|哪些人|什么人|哪些领导|哪位领导|\bwho\b|\bwhom\b|\bai\b")),
    (
        AnswerType.PLACE,
        re.compile(r"哪里|哪儿|什么地方|哪个地方|哪座城市|哪个城市|在哪|\bwhere\b|ở đâu|nơi nào"),
    ),
    (
        AnswerType.NUMBER,
        re.compile(
            r"多少|几个|几届|第几|几期|几次|几位|几名|多大|多高|多长|多远|\bhow (?:many|much)\b|bao nhiêu|mấy"
        ),
    ),
]
_NUMBER = re.compile(r"\d|[一二三四五六七八九十百千万亿两]+[个届期次名位项家亿万]")
_DATE = re.compile(r"\d{4}年|\d{1,2}月|\d{1,2}日|[上下]旬|年底|月底|年初|\d{4}[-/.]\d{1,2}")


def answer_type(question: str) -> AnswerType | None:
    folded = fold(question)
    for kind, pattern in _TYPE_PATTERNS:
        if pattern.search(folded):
            return kind
    return None


class Reranker:
    def __init__(
        self, index: SearchIndex, tokenizer: ChineseTokenizer, *, coverage_weight: float, type_weight: float
    ) -> None:
        self.index = index
        self.tokenizer = tokenizer
        self.coverage_weight = coverage_weight
        self.type_weight = type_weight
        self._df: Counter[str] | None = None
        self._entities = lru_cache(maxsize=8192)(self._passage_entities)
        self._sentences = lru_cache(maxsize=32768)(self._sentence_tokens)

    def warm(self) -> None:
        """Count document frequencies now rather than on the first question (seconds at 100k passages)."""
        if self._df is None:
            df: Counter[str] = Counter()
            for tokens in self.index.tokens:
                df.update(set(tokens))
            self._df = df

    def _idf(self, token: str) -> float:
        self.warm()
        assert self._df is not None
        n = max(1, len(self.index.tokens))
        return math.log(1 + (n - self._df.get(token, 0) + 0.5) / (self._df.get(token, 0) + 0.5))

    def coverage(self, row: int, terms: dict[str, float]) -> float:
        total = sum(terms.values())
        if not total:
            return 0.0
        best = 0.0
        for present in self._sentences(row):
            best = max(best, sum(w for t, w in terms.items() if t in present) / total)
        return best

    def _sentence_tokens(self, row: int) -> tuple[frozenset[str], ...]:
        """The token set of each sentence of a passage (cached: popular passages recur across questions)."""
        return tuple(
            frozenset(self.tokenizer.tokens(s)) for s in SENTENCE.findall(self.index.chunks[row].text)
        )

    def _passage_entities(self, row: int) -> tuple[frozenset[str], frozenset[str]]:
        found = self.tokenizer.tagged(self.index.chunks[row].text)
        people = frozenset(w for w, tag in found if tag in {"nr", "nrfg", "nrt"})
        places = frozenset(w for w, tag in found if tag == "ns")
        return people, places

    def type_match(self, row: int, kind: AnswerType, question: str) -> bool:
        text = fold(self.index.chunks[row].text)
        asked = fold(question)
        if kind is AnswerType.NUMBER:
            return any(m.group() not in asked for m in _NUMBER.finditer(text))
        if kind is AnswerType.DATE:
            return any(m.group() not in asked for m in _DATE.finditer(text))
        people, places = self._entities(row)
        names = people if kind is AnswerType.PERSON else places
        return any(name not in asked for name in names)

    def rerank(self, question: str, tokens: Sequence[str], candidates: list[Candidate]) -> list[Candidate]:
        if not candidates or (not self.coverage_weight and not self.type_weight):
            return candidates
        terms = {t: self._idf(t) for t in dict.fromkeys(tokens)}
        kind = answer_type(question)
        top = max(c.score for c in candidates)
        for cand in candidates:
            base = cand.score / top if top > 0 else 0.0
            cov = cand.coverage = self.coverage(cand.row, terms)
            typed = kind is not None and self.type_match(cand.row, kind, question)
            cand.score = base + self.coverage_weight * cov + (self.type_weight if typed else 0.0)
            cand.why.append(f"sentence coverage {cov:.2f}")
            if typed and kind is not None:
                cand.why.append(f"holds a {kind.value}")
        return sorted(candidates, key=lambda c: -c.score)
