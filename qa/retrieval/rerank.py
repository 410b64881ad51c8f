"""Passage-level evidence that re-orders the fused candidates.

Every candidate gets a feature vector (``FEATURES``): the fused, dense and BM25 evidence of the search,
and passage-level evidence:

- coverage: the share of the question's terms (IDF-weighted) found together in one sentence of the
  passage (an answer usually sits in the sentence that repeats the question's words), in the whole
  passage, in the passage next to it, and in the article's title;
- answer type: a question asking who / how many / when / where is better served by a passage that
  holds a person, number, date or place the question itself does not already name, best in or next to
  the sentence that covers the question;
- the article: how many of its passages are candidates, and whether this is its first passage.

With a ``LinearRanker`` (weights fitted on labelled questions by ``benchmarks/fit_ranker.py`` and
shipped in ``qa/data/ranker.json``) the score is its weighted sum; without one, the hand-set blend of
fused score, coverage and answer type.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from qa.errors import ConfigError
from qa.index.search_index import Presence, SearchIndex
from qa.records import Section
from qa.retrieval.categories import asked_measure
from qa.retrieval.hybrid import Candidate
from qa.retrieval.query import Query
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
    (
        AnswerType.PERSON,
        re.compile(
            r"谁|哪位|哪些人|什么人|哪些领导|哪位领导|\bwho\b|\bwhom\b|\bai\b"
            # someone's name: 嫌疑人叫什么名字, 她的母亲叫什么 (a word for a person before 叫什么)
            r"|[人者员管长手姐妹哥弟母父亲子女夫妻主板工师友客](?:的名字)?(?:叫什么|名字是什么)"
        ),
    ),
    (
        AnswerType.PLACE,
        re.compile(r"哪里|哪儿|什么地方|哪个地方|哪座城市|哪个城市|在哪|\bwhere\b|ở đâu|nơi nào"),
    ),
    (
        AnswerType.NUMBER,
        re.compile(
            # 几 with any measure word (几年, 几头, 几起, 几岁), never 几乎 / 几何; 多 with an adjective of size
            r"多少|几(?![乎何])[\u4e00-\u9fff]|多[大高长远重沉快深宽厚]|什么价|什么比分|什么成绩"
            r"|\bhow (?:many|much|old|large|big|long|high|low|far|fast|heavy|tall|deep)\b"
            r"|\bwhat\b[^?]{0,40}\b(?:price|fine|share|percentage|revenue|amount|score|sum|size|speed|cost|rate)\b"
            r"|bao nhiêu|mấy"
        ),
    ),
]
_NUMBER = re.compile(r"\d|[一二三四五六七八九十百千万亿两]+[个届期次名位项家亿万]")
_DATE = re.compile(r"\d{4}年|\d{1,2}月|\d{1,2}日|[上下]旬|年底|月底|年初|\d{4}[-/.]\d{1,2}")


# What a question asks, as opposed to the context it gives: the clause with the question word.
_CLAUSE = re.compile(r"[^，,、；;：:？?！!。]+")
_ASKS = re.compile(
    r"多少|几|谁|哪|什么|何时|何地|怎么|怎样|如何|是否|多大|多高|多长|多远|多久|多重|\bhow\b|\bwhat\b|\bwhich\b|"
    r"\bwho\b|\bwhen\b|\bwhere\b|bao nhiêu|mấy|ai\b|nào|gì"
)
ADJACENT = 8  # characters between a word of what is asked and an answer next to it
_FOCUS_WORDS = 5  # words before the question word kept in a long clause
# Characters that say nothing of what is asked (question words, particles, copulas).
_FILLER = set("多少几谁哪什么时候何怎样如是否的了吗呢为有在被给对把和与及其那这个些位名次共约")


def focus(question: str, words: Callable[[str], list[str]]) -> str:
    """The part of the question that names what is asked: the last clause holding a question word, and in
    a long clause the few words before that word and what follows. "…一案中，毛志尧血液中乙醇平均含量为
    多少？" asks for 乙醇平均含量, whatever the context before it says."""
    folded: str = fold(question)
    clauses: list[str] = [c.strip() for c in _CLAUSE.findall(folded) if c.strip()]
    if not clauses:
        return folded
    clause = next((c for c in reversed(clauses) if _ASKS.search(c)), clauses[-1])
    found = _ASKS.search(clause)
    if found is None:
        return clause
    before = words(clause[: found.start()])
    return "".join(before[-_FOCUS_WORDS:]) + clause[found.start() :]


def asked_words(question: str, words: Callable[[str], list[str]]) -> list[str]:
    """The words an answer stands beside: those after the question word in its clause, and the nearest
    meaningful word before it ("党委书记" in "广西壮族自治区党委书记是谁", "重" in "乌贼重多少公斤",
    "地方 … 关系" in "胡志明市与中国多少个地方保持友好合作关系")."""
    folded: str = fold(question)
    clauses: list[str] = [c.strip() for c in _CLAUSE.findall(folded) if c.strip()]
    clause = next((c for c in reversed(clauses) if _ASKS.search(c)), "")
    found = _ASKS.search(clause)
    if found is None:
        return []
    after = [w for w in words(clause[found.end() :]) if _focus_chars(w) and not _ASKS.search(w)]
    before = [w for w in words(clause[: found.start()]) if _focus_chars(w)]
    return before[-1:] + after


def _focus_chars(text: str) -> frozenset[str]:
    return frozenset(c for c in text if "\u4e00" <= c <= "\u9fff" and c not in _FILLER)


# The answer itself, as it is written in a passage (raw text, so offsets are the source's).
_UNITS = (
    "亿美元|万美元|美元|亿元|万元|千元|元|韩元|日元|越南盾|欧元|英镑|公斤|千克|克|吨|公里|千米|厘米|毫米|米|"
    "平方米|平方公里|亩|公顷|立方米|人次|人|名|位|个|件|辆|台|次|家|所|条|项|种|届|期|天|年|个月|月|小时|"
    "分钟|秒|岁|倍|套|只|头|张|户|起|场|卷|集|层|座|栋|股|元/|mg/100ml|%|％"
)
_NUMBER_SPAN = re.compile(
    rf"(?:约|近|超过|逾)?\d+(?:[.,]\d+)*(?:\s?[万亿千百])*(?:余|多)?\s?(?:{_UNITS})?"
    rf"|[一二三四五六七八九十百千万亿两]+(?:余|多)?(?:{_UNITS})"
)
_DATE_SPAN = re.compile(
    r"\d{4}[./]\d{1,2}[./]\d{1,2}|\d{4}年\d{1,2}月\d{1,2}日|\d{4}年\d{1,2}月|\d{1,2}月\d{1,2}日(?:凌晨|上午|中午|下午|晚上|晚)?|\d{4}年"
    r"|\d{4}-\d{1,2}-\d{1,2}|[上中下]旬|年底|年初"
)


_ASKS_DAY = re.compile(
    r"哪一?天|几号|几月几[日号]|哪一?日|\bwhat day\b|\bwhich day\b|\bon what date\b|ngày nào"
)


@dataclass(frozen=True)
class KeySentence:
    """The sentence of a passage that answers (offsets into the passage text), whether it holds what is
    asked, and the answer itself within the passage when the question asks who / how many / when / where."""

    start: int
    end: int
    answers: bool
    span: tuple[int, int] | None


def answer_type(question: str) -> AnswerType | None:
    folded = fold(question)
    for kind, pattern in _TYPE_PATTERNS:
        if pattern.search(folded):
            return kind
    return None


FEATURES = (
    "fused",  # fused score / the best candidate's
    "dense",  # cosine with the question
    "dense_rr",  # 1 / (1 + rank) in the dense list, 0 when absent
    "lexical_rr",  # the same in the BM25 list
    "lexical",  # BM25 score ÷ the best of its list, 0 when absent
    "dense_gap",  # cosine − the best candidate's cosine
    "coverage",  # the best sentence's share of the question's terms (IDF-weighted)
    "passage_coverage",  # the whole passage's share
    "neighbour_coverage",  # the best share of a sentence of the passage before or after
    "title_coverage",  # the article title's share
    "type",  # holds the kind of answer asked for (0 when the question asks for none)
    "type_near",  # ... in the best-covering sentence or the one after it
    "focus_coverage",  # the best sentence's share of the terms of what is asked (see focus())
    "focus_chars",  # ... its share of the characters of what is asked
    "focus_type",  # the sentence best covering what is asked, or the next one, holds the kind of answer
    "adjacent",  # an answer of that kind stands right next to a word of what is asked
    "entities",  # share of the question's names in the passage with its title
    "history_coverage",  # share of the earlier turns' terms in the passage and its title (0 without)
    "related",  # a related-news teaser
    "lead",  # the article's first passage
    "article_votes",  # how many candidates come from the same article (÷ 5, at most 1)
    "unit",  # holds a number written as the question's measure asks (多少户: 21户; 多高: 1134米)
    "unit_near",  # ... in the sentence best covering what is asked, or the next one
)


@dataclass(frozen=True)
class LinearRanker:
    """score = bias + Σ weight × feature, the weights of a logistic model fitted on labelled questions."""

    weights: tuple[float, ...]
    bias: float
    source: str = ""

    @classmethod
    def load(cls, path: Path) -> LinearRanker:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            names = tuple(data["features"])
            if names != FEATURES:
                raise ValueError(f"fitted on features {list(names)}, this version computes {list(FEATURES)}")
            return cls(tuple(float(w) for w in data["weights"]), float(data["bias"]), str(path))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"cannot use the ranker weights {path}: {exc}; refit with benchmarks/fit_ranker.py"
            ) from exc

    def score(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.asarray(features @ np.asarray(self.weights) + self.bias, dtype=np.float64)


class _Coverage:
    """A term set's share (IDF-weighted) held by each sentence, each passage and each title of some rows,
    from one ``Presence`` read; sums run over the terms in their order.

    Each share is computed once per term set for all the rows (a question asks them for 30-50
    candidates and their neighbours); term sets are known by identity, so the dicts passed in must not
    change while this is used (the reranker builds them once per question)."""

    def __init__(self, held: Presence, words: list[str]) -> None:
        self._held = held
        self._column = {w: i for i, w in enumerate(words)}
        self._shares: dict[tuple[str, int], tuple[dict[str, float], list[float]]] = {}

    def _row_shares(self, which: str, terms: dict[str, float]) -> list[float]:
        """The share of ``terms`` of every row of one of the presence tables: ``sentences``, ``passages``,
        ``titles``, or ``passages+titles`` (a passage counting its title's terms as held too)."""
        found = self._shares.get((which, id(terms)))
        if found is not None and found[0] is terms:  # the dict kept alive with it: its id is not reused
            return found[1]
        held = self._held
        if which == "passages+titles":
            present = held.passages | held.titles
        else:
            present = {"sentences": held.sentences, "passages": held.passages, "titles": held.titles}[which]
        total = sum(terms.values())
        if not total or not present.shape[0]:
            shares = [0.0] * present.shape[0]
        else:
            weights = np.fromiter(terms.values(), dtype=np.float64, count=len(terms))
            columns = [self._column[t] for t in terms]
            # A running sum in the terms' order (np.cumsum adds left to right, as sum() does; the terms
            # not held add 0.0, which changes no sum).
            sums = np.cumsum(present[:, columns] * weights, axis=1)[:, -1]
            shares = (sums / total).tolist()
        self._shares[(which, id(terms))] = (terms, shares)
        return shares

    def best(self, row: int, terms: dict[str, float]) -> tuple[float, int]:
        """The best sentence's share of the terms, and its position in the passage (the first best)."""
        shares = self._row_shares("sentences", terms)
        at = self._held.at[row]
        first, end = self._held.sentence_bounds[at], self._held.sentence_bounds[at + 1]
        best, where = 0.0, 0
        for i in range(first, end):
            if shares[i] > best:
                best, where = shares[i], i - first
        return best, where

    def passage(self, row: int, terms: dict[str, float], *, with_title: bool = False) -> float:
        """The whole passage's share of the terms, counting those of its article's title as held too
        when ``with_title``."""
        return self._row_shares("passages+titles" if with_title else "passages", terms)[self._held.at[row]]

    def title(self, row: int, terms: dict[str, float]) -> float:
        """The share of the terms the title of the row's article holds."""
        return self._row_shares("titles", terms)[self._held.at[row]]


class Reranker:
    def __init__(
        self,
        index: SearchIndex,
        tokenizer: ChineseTokenizer,
        *,
        coverage_weight: float,
        type_weight: float,
        ranker: LinearRanker | None = None,
    ) -> None:
        self.index = index
        self.tokenizer = tokenizer
        self.coverage_weight = coverage_weight
        self.type_weight = type_weight
        self.ranker = ranker
        # A question's candidates and their neighbours, about 90 rows: a few thousand entries (~1.6 KB each)
        # keep recent questions' without growing a worker by more than ~13 MB.
        self._folded = lru_cache(maxsize=8192)(self._fold_sentences)
        self._idf = lru_cache(maxsize=65536)(self._token_idf)

    def _token_idf(self, token: str) -> float:
        n = max(1, len(self.index))
        df = self.index.passages.document_frequency(token)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def _covering(self, rows: Sequence[int], term_sets: Sequence[dict[str, float]]) -> _Coverage:
        """What the passages ``rows`` hold of the words of ``term_sets``, read in one pass."""
        words = list(dict.fromkeys(t for terms in term_sets for t in terms))
        return _Coverage(self.index.presence(list(dict.fromkeys(rows)), words), words)

    def _fold_sentences(self, row: int) -> tuple[str, tuple[str, ...]]:
        """The passage folded, and each of its sentences folded. Where folding left the passage's length
        as it was (98% of the inews passages: it changes nothing but one character for another), the
        sentences are cut out of the folded passage at their own offsets, which gives each one's fold
        (every such passage of the inews package checked: 75,448 rows); else each is folded alone."""
        text = self.index.chunks[row].text
        folded = fold(text)
        spans = [m.span() for m in SENTENCE.finditer(text)]
        if len(folded) == len(text):
            return folded, tuple(folded[start:end] for start, end in spans)
        return folded, tuple(fold(text[start:end]) for start, end in spans)

    def _entities(self, row: int) -> tuple[frozenset[str], frozenset[str]]:
        """The people and the places named in the passage ``row`` (tagged when it was written)."""
        return self.index.names[row]

    def type_match(self, row: int, kind: AnswerType, question: str, text: str | None = None) -> bool:
        """Whether the passage (or ``text``, a part of it) holds an answer of the kind asked for that the
        question does not already name: any number or date mark, or a name of the passage's (the search
        stops at the first)."""
        folded = fold(self.index.chunks[row].text if text is None else text)
        return self._typed_in(row, kind, question, folded)

    def _typed_in(self, row: int, kind: AnswerType, question: str, folded: str) -> bool:
        """``type_match`` of a text already folded."""
        return next(self._spans(row, kind, question, folded, _NUMBER, _DATE), None) is not None

    def adjacent(
        self, row: int, kind: AnswerType, question: str, words: Sequence[str], folded: str | None = None
    ) -> bool:
        """Whether an answer of the kind asked for stands within ``ADJACENT`` characters of a word of what
        is asked ("党委书记刘宁", "乌贼重135公斤", "罚款1900元"); ``folded``: the passage folded, if the
        caller has it."""
        text = fold(self.index.chunks[row].text) if folded is None else folded
        spans = list(self._spans(row, kind, question, text, _NUMBER, _DATE))  # any number or date mark
        if not spans:
            return False
        for word in words:
            for m in re.finditer(re.escape(word), text):
                if any(m.start() - ADJACENT <= end and start <= m.end() + ADJACENT for start, end in spans):
                    return True
        return False

    def _typed_spans(self, row: int, kind: AnswerType, question: str, text: str) -> list[tuple[int, int]]:
        """Answers of the kind asked for in ``text`` (the raw passage), whole (a number with its unit),
        which the question does not name: what an answer span may be."""
        return list(self._spans(row, kind, question, text, _NUMBER_SPAN, _DATE_SPAN))

    def _spans(
        self,
        row: int,
        kind: AnswerType,
        question: str,
        text: str,
        number: re.Pattern[str],
        date: re.Pattern[str],
    ) -> Iterator[tuple[int, int]]:
        """Where in ``text`` answers of the kind asked for stand that the question does not name, in
        order, found as they are asked for (whoever needs only the first stops there)."""
        asked = fold(question)
        if kind in (AnswerType.NUMBER, AnswerType.DATE):
            pattern = number if kind is AnswerType.NUMBER else date
            return (
                m.span() for m in pattern.finditer(text) if m.group().strip() and fold(m.group()) not in asked
            )
        people, places = self._entities(row)
        return (
            m.span()
            for name in (people if kind is AnswerType.PERSON else places)
            if name not in asked
            for m in re.finditer(re.escape(name), text)
        )

    def key_sentence(self, query: Query, row: int) -> KeySentence:
        """The sentence that holds what is asked: the characters of the question's focus, and an answer of
        the asked kind right beside its words ("乌贼重135公斤"); with that answer as the span."""
        text = self.index.chunks[row].text
        question = query.question
        kind = answer_type(question)
        asked = focus(question, self.tokenizer.words)
        chars = _focus_chars(asked)
        words = asked_words(question, self.tokenizer.words)
        spans = self._typed_spans(row, kind, question, text) if kind is not None else []
        if kind is AnswerType.DATE and _ASKS_DAY.search(fold(question)):  # 哪一天: a year does not answer
            spans = [s for s in spans if re.search(r"日|\d[./-]\d{1,2}[./-]\d", text[s[0] : s[1]])]
        best: tuple[float, KeySentence] | None = None
        for match in SENTENCE.finditer(text):
            sentence = match.group().strip()
            if not sentence:
                continue
            start = match.start() + match.group().index(sentence)
            end = start + len(sentence)
            share = len(chars & set(fold(sentence))) / len(chars) if chars else 0.0
            inside = [s for s in spans if start <= s[0] and s[1] <= end]
            beside = [
                s
                for s in inside
                for w in words
                for m in re.finditer(re.escape(w), fold(text[start:end]))
                if start + m.start() - ADJACENT <= s[1] and s[0] <= start + m.end() + ADJACENT
            ]
            score = share + (0.3 if beside else 0.0) + (0.2 if inside else 0.0)
            answers = bool(beside) if kind is not None else share >= 0.6
            span = (
                beside[0] if len(set(beside)) == 1 else None
            )  # one answer beside the words, or none claimed
            if best is None or score > best[0]:
                best = (score, KeySentence(start, end, answers, span))
        if best is None:
            return KeySentence(0, len(text), False, None)
        return best[1]

    def features(self, query: Query, candidates: Sequence[Candidate]) -> npt.NDArray[np.float64]:
        """One row of ``FEATURES`` per candidate; sets each candidate's ``coverage``."""
        terms = {t: self._idf(t) for t in dict.fromkeys(query.tokens)}
        earlier = {t: self._idf(t) for t in dict.fromkeys(query.history_tokens)}
        kind = answer_type(query.question)
        question = query.question
        top = max((c.score for c in candidates), default=0.0)
        votes = Counter(self.index.chunks[c.row].doc_id for c in candidates)
        best_cosine = max((c.dense_score for c in candidates), default=0.0)
        asked = focus(question, self.tokenizer.words)
        focus_terms = {t: self._idf(t) for t in dict.fromkeys(self.tokenizer.tokens(asked))}
        focus_chars = _focus_chars(asked)
        focus_words = [
            w for w in self.tokenizer.words(asked) if len(w) > 1 and not _ASKS.search(w) and _focus_chars(w)
        ]
        folded = fold(question)
        measure = asked_measure(folded)
        out = np.zeros((len(candidates), len(FEATURES)), dtype=np.float64)
        placed = []
        for cand in candidates:
            chunk = self.index.chunks[cand.row]
            rows = self.index.rows_by_doc.get(chunk.doc_id, [cand.row])
            at = rows.index(cand.row) if cand.row in rows else 0
            placed.append((chunk, at, [r for r in rows[max(0, at - 1) : at + 2] if r != cand.row]))
        held = self._covering(
            [r for cand, (_, _, near) in zip(candidates, placed, strict=True) for r in (cand.row, *near)],
            [terms, focus_terms, earlier],
        )
        for i, (cand, (chunk, at, neighbours)) in enumerate(zip(candidates, placed, strict=True)):
            cov, best = held.best(cand.row, terms)
            cand.coverage = cov
            near_cov = max((held.best(r, terms)[0] for r in neighbours), default=0.0)
            body, sentences = self._folded(cand.row)  # the passage and its sentences, folded
            typed = near = False
            if kind is not None:
                typed = self._typed_in(cand.row, kind, question, body)
                if typed:
                    near = self._typed_in(cand.row, kind, question, "".join(sentences[best : best + 2]))
            f_cov, f_at = held.best(cand.row, focus_terms)
            f_chars = (  # the share of the focus's characters the best sentence holds
                max((len(focus_chars.intersection(f)) / len(focus_chars) for f in sentences), default=0.0)
                if focus_chars
                else 0.0
            )
            f_type = (
                kind is not None
                and bool(sentences)
                and self._typed_in(cand.row, kind, question, "".join(sentences[f_at : f_at + 2]))
            )
            beside = (
                kind is not None and f_type and self.adjacent(cand.row, kind, question, focus_words, body)
            )
            unit = unit_near = False
            if measure is not None:
                unit = self._measured(measure, body, folded)
                if unit:
                    unit_near = self._measured(measure, "".join(sentences[f_at : f_at + 2]), folded)
            names = query.entities
            if names:  # in the title or the passage (the title folded once for the whole question)
                title = fold(self.index.titles[chunk.doc_id])
                present = sum(any(n in title or n in body for n in group) for group in names) / len(names)
            else:
                present = 1.0
            out[i] = (
                cand.score / top if top > 0 else 0.0,
                cand.dense_score,
                1.0 / (1 + cand.dense_rank) if cand.dense_rank is not None else 0.0,
                1.0 / (1 + cand.lexical_rank) if cand.lexical_rank is not None else 0.0,
                cand.lexical_score,
                cand.dense_score - best_cosine,
                cov,
                held.passage(cand.row, terms),
                near_cov,
                held.title(cand.row, terms),
                float(typed),
                float(near),
                f_cov,
                f_chars,
                float(f_type),
                float(beside),
                present,
                held.passage(cand.row, earlier, with_title=True) if earlier else 0.0,
                float(chunk.section is Section.RELATED),
                float(at == 0),
                min(1.0, votes[chunk.doc_id] / 5),
                float(unit),
                float(unit_near),
            )
        return out

    @staticmethod
    def _measured(measure: re.Pattern[str], text: str, asked: str) -> bool:
        """``text`` holds a number written as ``measure`` that the (folded) question ``asked`` does not
        itself give."""
        return any(m.group().strip() not in asked for m in measure.finditer(text))

    def rerank(self, query: Query, candidates: list[Candidate]) -> list[Candidate]:
        if not candidates:
            return candidates
        if self.ranker is not None:
            features = self.features(query, candidates)
            for cand, score, row in zip(candidates, self.ranker.score(features), features, strict=True):
                cand.score = float(score)
                cand.features = tuple(row.tolist())
                cand.why.append(f"sentence coverage {row[FEATURES.index('coverage')]:.2f}")
                if row[FEATURES.index("type_near")]:
                    cand.why.append("holds the kind of answer asked for next to the question's words")
            return sorted(candidates, key=lambda c: -c.score)
        if not self.coverage_weight and not self.type_weight:
            return candidates
        question, tokens = query.question, query.tokens
        terms = {t: self._idf(t) for t in dict.fromkeys(tokens)}
        kind = answer_type(question)
        top = max(c.score for c in candidates)
        held = self._covering([c.row for c in candidates], [terms])
        for cand in candidates:
            base = cand.score / top if top > 0 else 0.0
            cov = cand.coverage = held.best(cand.row, terms)[0]
            typed = kind is not None and self.type_match(cand.row, kind, question)
            cand.score = base + self.coverage_weight * cov + (self.type_weight if typed else 0.0)
            cand.why.append(f"sentence coverage {cov:.2f}")
            if typed and kind is not None:
                cand.why.append(f"holds a {kind.value}")
        return sorted(candidates, key=lambda c: -c.score)
