"""Grounding: answer only from passages that support the question, and abstain otherwise.

Signals, in the order they are checked (each measured on the dev set and on off-topic questions):
- entities: every name the question asks about (people, places, organisations, years, foreign terms)
  must appear in the passage's own context (its article's title or teaser heading, the passage and its
  neighbours), and so must one of the words of what it asks about: a question about 日本 is not answered
  by a passage about 中国, nor "泰国总理是谁?" by a passage that mentions 泰国 but no 总理;
- qualifiers: a question about the 13th edition, the second phase or 2016 is not answered by a passage
  (or, when the passage names none, an article) about the 14th, the first phase or 2017
  (``qa.retrieval.qualifiers``);
- rank: the best supported passage must be among the top ``rank_window`` passages of the ranking; a
  passage that merely mentions the name further down is not an answer;
- similarity: its cosine with the question reaches ``min_dense_score`` (``min_dense_score_foreign`` for
  questions not written in Chinese, whose cosines with Chinese text run lower), less ``entity_relief``
  when the question names something and the passage names it too;
- novelty: when the question uses a word the corpus never contains (人口, 地铁), the passage's best sentence
  must still cover ``min_coverage`` of the question's terms.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from qa.config import RetrievalSettings
from qa.index.search_index import SearchIndex
from qa.records import Section
from qa.retrieval.categories import (
    Category,
    Quantity,
    asked_category,
    asked_quantity,
    gives_quantity,
    names_one,
)
from qa.retrieval.gate import AnswerGate, gate_features
from qa.retrieval.hybrid import Candidate
from qa.retrieval.qualifiers import Qualifier, conflicting, qualifiers
from qa.retrieval.query import Query
from qa.retrieval.rerank import focus
from qa.text.normalize import fold
from qa.text.tokenize import pair_tokens

# A place written with its administrative suffix in the question and without it in the text, or the
# other way round (景宁县 / 景宁, 惠州 / 惠州市).
_SUFFIX = "市省县区镇乡"
_YEAR = re.compile(r"(?:19|20)\d{2}年?")
_QUESTION_WORD = re.compile(r"几|多少")  # 几集, 几卷, 多少次: the question word with its unit


def _mentions(text: str, name: str) -> bool:
    if name in text:
        return True
    if len(name) >= 3 and name[-1] in _SUFFIX:
        return name[:-1] in text
    return False


@lru_cache(maxsize=1024)
def _asked_category(question: str) -> Category | None:
    return asked_category(fold(question))


@lru_cache(maxsize=1024)
def _asked_quantity(question: str) -> Quantity | None:
    return asked_quantity(fold(question))


@lru_cache(maxsize=1024)
def _asked_qualifiers(question: str) -> tuple[Qualifier, ...]:
    return tuple(qualifiers(fold(question)))


@dataclass
class Judged:
    candidate: Candidate
    missing: list[str]
    near_miss: bool = False  # refused for another edition, year, category or unit than the one asked


@dataclass
class Decision:
    answerable: bool
    reason: str
    ordered: list[Judged]  # supported passages first, then the others, each in rank order


class Grounding:
    def __init__(
        self,
        index: SearchIndex,
        settings: RetrievalSettings,
        gate: AnswerGate | None = None,
        known: Callable[[str], bool] | None = None,
        words: Callable[[str], list[str]] | None = None,
    ) -> None:
        self.index = index
        self.settings = settings
        self.gate = gate
        self.known = known  # whether a word is a word (jieba's dictionary); None: every word is
        self.words = words  # a text's words, to find what a question asks; None: the whole question
        self._whole = lru_cache(maxsize=1024)(lambda doc_id: self.index.articles[doc_id].text)
        self._articles = lru_cache(maxsize=4096)(self._article_text)
        self._context = lru_cache(maxsize=16384)(self._local_context)

    def _local_context(self, row: int) -> str:
        chunk = self.index.chunks[row]
        label = chunk.heading if chunk.section is Section.RELATED else self.index.titles[chunk.doc_id]
        rows = self.index.rows_by_doc.get(chunk.doc_id, [row])
        at = rows.index(row) if row in rows else 0
        near = [
            self.index.chunks[r].text
            for r in rows[max(0, at - 1) : at + 2]
            if self.index.chunks[r].section is chunk.section and self.index.chunks[r].heading == chunk.heading
        ]
        return fold(label + "\n" + "\n".join(near))

    def _article_text(self, doc_id: str) -> str:
        """What the article is about: its title and lead (its first two passages). A name given there is
        the article's subject and need not be repeated by the passage that answers; a name further down
        is only mentioned in passing (泰国 in a list of ASEAN members)."""
        lead = [self.index.chunks[r].text for r in self.index.rows_by_doc.get(doc_id, [])[:2]]
        return fold(self.index.titles[doc_id] + "\n" + "\n".join(lead))

    def judge(self, query: Query, candidate: Candidate) -> Judged:
        near = self.near_misses(query, candidate.row)
        return Judged(candidate, self._unnamed(query, candidate.row) + near, bool(near))

    def missing(self, query: Query, row: int) -> list[str]:
        """What the passage lacks to answer: see ``_unnamed`` and ``near_misses``."""
        return self._unnamed(query, row) + self.near_misses(query, row)

    def _unnamed(self, query: Query, row: int) -> list[str]:
        """What the passage lacks: names the question asks about (in its neighbourhood, or its article's
        title and lead: a name the lead gives is not repeated in every passage), or every word of what
        it asks (in its neighbourhood).

        A passage that names 泰国 but says nothing of a 总理 does not answer "泰国总理是谁?".
        """
        if not self.settings.entity_check:
            return []
        text = self._context(row)
        doc_id = self.index.chunks[row].doc_id
        article = self._articles(doc_id)
        lacking = [
            group[0]
            for group in query.entities
            if not any(name in text or _mentions(article, name) for name in group)
            # A year is background the article may give anywhere (1991年 in "1991年…潜逃26年的陆某");
            # one the article contradicts is a near miss, judged below.
            and not (_YEAR.fullmatch(group[0]) and group[0][:4] in self._whole(doc_id))
        ]
        asked = [w for w in query.content_words if len(w) >= 2]
        # The words of what is asked, when the question also names something. Not for a foreign question:
        # its words are dictionary renderings, one of several (President → 主席 where the article says 总统).
        if asked and query.entities and query.chinese and not any(word in text for word in asked):
            lacking.append("“" + "、".join(asked[:3]) + "”")
        return lacking

    def near_misses(self, query: Query, row: int) -> list[str]:
        """What makes the passage a near miss: it tells of the asked thing but not of the asked kind (no
        university named, no area given) or of another edition, phase or year than the one asked."""
        if not self.settings.entity_check:
            return []
        text = self._context(row)
        article = self._articles(self.index.chunks[row].doc_id)
        lacking: list[str] = []
        # "哪所大学": a passage that names no university does not say which.
        category = _asked_category(query.question)
        if category is not None and not names_one(category, text, fold(query.question)):
            lacking.append(f"所问的{category.noun}")
        # "多少平方米": a passage that gives no area does not say how large.
        quantity = _asked_quantity(query.question)
        if quantity is not None and not gives_quantity(quantity, text):
            lacking.append(f"以{quantity.unit}计的数字")
        # A near miss: the passage tells of another edition, phase or year than the one asked about.
        asked_for = _asked_qualifiers(query.question)
        if asked_for:
            passage = fold(self.index.chunks[row].text)
            lacking += [q.text for q in conflicting(asked_for, (passage, article))]
        return lacking

    def novel_words(self, query: Query) -> list[str]:
        """Words of what the question asks (its clause with the question word) that the corpus never
        contains, not even as a character pair. A word of the context it gives may be the asker's own
        synonym (掏出一沓百元大钞 for the article's 拿出一叠): that is a paraphrase, not another topic."""
        lexical = self.index.passages
        asked = focus(query.question, self.words) if self.words is not None else fold(query.question)
        novel = []
        for word in query.content_words:
            if len(word) < 2 or lexical.knows(word) or word not in asked or _QUESTION_WORD.match(word):
                continue
            if self.known is not None and not self.known(word):
                continue  # a fragment of two words (锅时, 判曹), not a word the corpus lacks
            if not any(lexical.knows(p) for p in pair_tokens(word)):
                novel.append(word)
        return novel

    def decide(self, query: Query, candidates: list[Candidate]) -> Decision:
        if self.gate is not None:
            return self._gated(query, candidates, self.gate)
        return self._by_rules(query, candidates)

    def _gated(self, query: Query, candidates: list[Candidate], gate: AnswerGate) -> Decision:
        """The ranking stays as it is; the gate decides on its best passage."""
        judged = [self.judge(query, c) for c in candidates]
        if not judged:
            return Decision(False, "没有找到相关段落", [])
        novel = self.novel_words(query) if query.chinese else []
        best = judged[0]
        x = gate_features(
            self.index, query, candidates, self._context(best.candidate.row), best.missing, bool(novel)
        )
        p = gate.probability(x)
        best.candidate.why.append(f"answer gate {p:.2f}")
        if p >= gate.threshold:
            return Decision(True, "", judged)
        return Decision(False, self._reason(query, best, novel, p), judged)

    def _reason(self, query: Query, best: Judged, novel: list[str], p: float) -> str:
        """A true reason for abstaining: what the best passage's article lacks, else the low match."""
        article = self.index.articles[self.index.chunks[best.candidate.row].doc_id]
        text = fold(article.title + "\n" + article.text)
        absent = [g[0] for g in query.entities if not any(n in text for n in g)]
        if absent:
            return "最相关的文章没有提到" + "、".join(absent)
        if novel:
            return "检索到的文章没有涉及" + "、".join(f"“{w}”" for w in novel)
        return f"最相关的段落不足以回答这个问题（可信度 {p:.2f}）"

    def _by_rules(self, query: Query, candidates: list[Candidate]) -> Decision:
        s = self.settings
        judged = [self.judge(query, c) for c in candidates]
        supported = [j for j in judged if not j.missing]
        ordered = supported + [j for j in judged if j.missing]
        if not judged:
            return Decision(False, "没有找到相关段落", [])
        if not supported:
            names = "、".join(dict.fromkeys(n for j in judged[:3] for n in j.missing))
            return Decision(False, f"检索到的文章没有提到{names}", ordered)
        best = supported[0]
        at = judged.index(best)
        if at >= s.rank_window:
            names = "、".join(dict.fromkeys(n for j in judged[: s.rank_window] for n in j.missing))
            return Decision(False, f"最相关的段落没有提到{names}", ordered)
        # The passages closest to the question tell of another year or edition, or give no such answer: a
        # passage further from it that happens to pass every check is not about the asked thing either.
        closer = [
            j
            for j in judged[:at]
            if j.near_miss and j.candidate.dense_score >= best.candidate.dense_score + s.near_miss_margin
        ]
        if closer:
            names = "、".join(dict.fromkeys(n for j in closer for n in j.missing))
            return Decision(False, f"最相关的段落没有提到{names}", ordered)
        floor = s.min_dense_score if query.chinese else s.min_dense_score_foreign
        if query.entities:  # the names it asks about are in the passage: evidence beyond similarity
            floor -= s.entity_relief
        if best.candidate.dense_score < floor:
            return Decision(False, f"相关度过低（{best.candidate.dense_score:.2f} < {floor:.2f}）", ordered)
        novel = self.novel_words(query) if query.chinese else []
        if novel and best.candidate.coverage < s.min_coverage:
            return Decision(False, "检索到的文章没有涉及" + "、".join(f"“{w}”" for w in novel), ordered)
        return Decision(True, "", ordered)
