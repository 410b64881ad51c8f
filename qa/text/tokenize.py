"""Chinese-aware tokens for BM25 and entity checks: jieba words plus CJK character bigrams.

Text is folded first (NFKC, Traditional → Simplified, lower case). Words keep names whole (a user
dictionary of names, plus every alias), bigrams make matching robust to segmentation differences;
Latin words and numbers stay whole.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

with warnings.catch_warnings():
    # jieba 0.42 imports pkg_resources when setuptools is installed, which warns on every `qa` command
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import jieba
    import jieba.posseg

from qa.text.dag import Tokenizer
from qa.text.normalize import all_cjk, fold, is_cjk
from qa.text.postag import POSTokenizer

log = logging.getLogger(__name__)
jieba.setLogLevel(logging.WARNING)

STOPWORDS = frozenset(
    [
        "的",
        "了",
        "是",
        "在",
        "和",
        "与",
        "及",
        "有",
        "也",
        "都",
        "就",
        "而",
        "并",
        "对",
        "从",
        "把",
        "被",
        "将",
        "等",
        "之",
        "其",
        "这",
        "那",
        "该",
        "此",
        "为",
        "于",
        "以",
        "或",
        "中",
        "上",
        "下",
        "吗",
        "呢",
        "吧",
        "啊",
        "什么",
        "哪些",
        "哪个",
        "哪位",
        "哪里",
        "哪",
        "谁",
        "多少",
        "几",
        "怎么",
        "怎样",
        "如何",
        "为什么",
        "是否",
        "是不是",
        "请问",
        "一下",
        "一个",
        "哪一天",
        "何时",
        "什么时候",
        "多大",
        "多长",
        "有没有",
        "关于",
        "告诉",
        "我",
        "你",
        "他",
        "她",
        "它",
        "我们",
        "他们",
        "the",
        "a",
        "an",
        "of",
        "to",
        "in",
        "on",
        "for",
        "and",
        "is",
        "are",
        "was",
        "were",
        "what",
        "which",
        "who",
        "whom",
        "how",
        "when",
        "where",
        "why",
        "many",
        "much",
        "does",
        "do",
        "did",
        "with",
        "by",
        "at",
        "from",
    ]
)
# Texts this short (a question, its clauses and focus) have their words cached: a question's are asked
# for many times over (its tokens, entities, focus, the words beside its question word, per candidate).
SHORT_TEXT = 160
SHORT_TEXTS_CACHED = 4096
BUNDLED_USERDICT = Path(__file__).resolve().parent.parent / "data" / "userdict.txt"
ENTITY_TAGS = frozenset({"nr", "nrt", "nrfg", "ns", "nt", "nz"})
PERSON_TAGS = frozenset({"nr", "nrfg", "nrt"})
PLACE_TAGS = frozenset({"ns"})
GENERIC_ENTITIES = frozenset(
    [
        "中国",
        "越南",
        "中越",
        "越中",
        "两国",
        "双方",
        "国家",
        "政府",
        "地方",
        "全国",
        "国际",
        "世界",
        "亚洲",
        "东盟",
        "中央",
        "中共",
        "越共",
        "越南政府",
        # what a question asks for, not a name it gives ("在哪座城市落网")
        "城市",
        "省份",
        "地区",
        "国内",
        "海外",
    ]
)
_CJK = "\u3400-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"\d+(?:[.,]\d+)*%?|[{_CJK}]+|[^\W\d_{_CJK}]+")
_YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})(?:年)")
_BARE_YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})(?!\d)")
_LATIN_TERM = re.compile(r"(?<![a-z])[a-z][a-z0-9+#.\-]*[a-z0-9+#](?![a-z])")
_QUESTION_WORD = re.compile(r"[哪何几]|什么")
_ORGANISATION = re.compile(r"..(?:公司|集团|银行|大学|学院|医院|协会|基金会|交易所|研究院)$")


def pair_tokens(run: str) -> list[str]:
    """The BM25 tokens of a CJK run's character pairs, as the index stores them ("#" + pair)."""
    return ["#" + run[i : i + 2] for i in range(len(run) - 1)]


class ChineseTokenizer:
    """Thread-safe wrapper around one jieba dictionary with the names users configure."""

    def __init__(self, names: Iterable[str] = (), userdict: Path | None = None) -> None:
        self._jieba = Tokenizer()  # jieba's, its word graph and route computed faster
        self._lock = threading.Lock()
        self._names = sorted({fold(n) for n in names if n.strip()})
        self._userdict = userdict
        self._ready = False
        self._pos: POSTokenizer | None = None
        self._short_words = lru_cache(maxsize=SHORT_TEXTS_CACHED)(self._words_of)

    def _init(self) -> None:
        with self._lock:
            if self._ready:
                return
            self._jieba.initialize()
            self._jieba.load_userdict(str(BUNDLED_USERDICT))
            if self._userdict:
                self._jieba.load_userdict(str(self._userdict))
            for name in self._names:
                self._jieba.add_word(name, freq=200, tag="nr")
            self._pos = POSTokenizer(self._jieba)  # jieba's tagger, its decoder in numpy
            self._ready = True

    def warm(self) -> None:
        """Load jieba's dictionary and its tagger now (about 1 s, once; a question asked meanwhile waits
        for this load, not another), instead of in the first question that needs them."""
        if not self._ready:
            self._init()

    def words(self, text: str) -> list[str]:
        """jieba words of the folded text (no stopword removal)."""
        if not self._ready:
            self._init()
        folded = fold(text)
        if len(folded) <= SHORT_TEXT:
            return list(self._short_words(folded))
        return list(self._words_of(folded))

    def _words_of(self, folded: str) -> tuple[str, ...]:
        return tuple(w for w in self._jieba.lcut(folded) if w.strip())

    def known(self, word: str) -> bool:
        """Whether jieba's dictionary holds the word: a real word, not a fragment its HMM glued together
        from the ends of two words (火锅时 → 锅时)."""
        if not self._ready:
            self._init()
        return bool(self._jieba.FREQ.get(fold(word)))

    def frequency(self, word: str) -> int:
        """How often jieba's dictionary says the word occurs (0 when it does not know it)."""
        if not self._ready:
            self._init()
        return int(self._jieba.FREQ.get(fold(word)) or 0)

    def tokens(self, text: str) -> list[str]:
        """BM25 tokens: Chinese content words, Latin words and numbers, and the bigrams of every CJK run."""
        folded = fold(text)
        out = [w for w in self.words(folded) if len(w) > 1 and w not in STOPWORDS and all_cjk(w)]
        for run in _TOKEN.findall(folded):
            if not is_cjk(run[0]):
                if run not in STOPWORDS:
                    out.append(run)
            elif len(run) > 1:
                out.extend(pair_tokens(run))
        return out

    def tagged(self, text: str) -> list[tuple[str, str]]:
        """(word, part-of-speech tag) pairs of the folded text."""
        if not self._ready:
            self._init()
        assert self._pos is not None
        return [(pair.word, pair.flag) for pair in self._pos.lcut(fold(text))]

    def names(self, text: str) -> tuple[list[str], list[str]]:
        """The people and the places the tagger finds in a passage (folded, each once, first seen
        first): what the reranker reads to tell whether a passage answers "who" or "where"; computed
        when a passage is written and stored with it."""
        found = self.tagged(text)
        people = list(dict.fromkeys(w for w, tag in found if tag in PERSON_TAGS))
        places = list(dict.fromkeys(w for w, tag in found if tag in PLACE_TAGS))
        return people, places

    def entities(self, text: str, *, chinese: bool = True) -> list[str]:
        """Names of people, places and organisations in a question, and the years it asks about."""
        folded = fold(text)
        found: list[str] = []

        def add(name: str) -> None:
            if name not in found and name not in GENERIC_ENTITIES:
                found.append(name)

        if chinese:
            for word, tag in self.tagged(folded):
                if (tag in ENTITY_TAGS and len(word) >= 2) or (
                    len(word) >= 4 and _ORGANISATION.search(word) and not _QUESTION_WORD.search(word)
                ):
                    add(word)
            for term in _LATIN_TERM.findall(folded):
                if term not in STOPWORDS:
                    add(term)
            for year in _YEAR.findall(folded):
                add(year)
        else:
            for year in _BARE_YEAR.findall(folded):
                add(year)
        return found
