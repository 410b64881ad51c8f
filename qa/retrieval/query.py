"""Turn a question (and the conversation's earlier user turns) into what the searchers need."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from qa.retrieval.gazetteer import Gazetteer, Glossary
from qa.text.normalize import cjk_ratio, fold
from qa.text.tokenize import ChineseTokenizer


@dataclass(frozen=True)
class Query:
    question: str
    dense_text: str  # the question with the other spellings of its names appended
    tokens: list[str]  # BM25 tokens, alias spellings included
    entities: list[tuple[str, ...]]  # each: the spellings of one name the answer must mention
    history_text: str = ""  # earlier user turns used as context ("" when none)
    history_tokens: list[str] = field(default_factory=list)
    content_words: list[str] = field(default_factory=list)  # the question's other words (not names)
    chinese: bool = True  # written mostly in Chinese (else English, Vietnamese, ...)


class AliasTable:
    """Groups of spellings of one name (范明政 / 范明正); matching is on folded text."""

    def __init__(self, groups: Sequence[Sequence[str]]) -> None:
        self._groups = [tuple(dict.fromkeys(fold(n) for n in g)) for g in groups]

    @property
    def names(self) -> list[str]:
        return [n for g in self._groups for n in g]

    def variants(self, name: str) -> tuple[str, ...]:
        folded = fold(name)
        for group in self._groups:
            if folded in group:
                return group
        return (folded,)

    def mentioned(self, text: str) -> list[tuple[str, ...]]:
        folded = fold(text)
        return [g for g in self._groups if any(n in folded for n in g)]


class QueryBuilder:
    def __init__(
        self,
        tokenizer: ChineseTokenizer,
        aliases: AliasTable,
        history_turns: int,
        gazetteer: Gazetteer,
        glossary: Glossary,
    ) -> None:
        self.tokenizer = tokenizer
        self.aliases = aliases
        self.history_turns = history_turns
        self.gazetteer = gazetteer
        self.glossary = glossary

    def translated(self, word: str) -> bool:
        """An English or Vietnamese word the gazetteer or glossary already renders in Chinese."""
        return self.gazetteer.knows(word) or self.glossary.knows(word)

    def _entities(self, question: str, chinese: bool) -> tuple[list[tuple[str, ...]], list[str]]:
        """Names the answer must mention (each with its spellings), and Chinese names of foreign ones."""
        groups: list[tuple[str, ...]] = []

        def add(group: tuple[str, ...]) -> None:
            if not any(set(group) & set(g) for g in groups):
                groups.append(group)

        translated: list[str] = []
        words = self.tokenizer.words(question)
        places = self.gazetteer.in_words(words) if chinese else self.gazetteer.in_foreign_text(question)
        for place in places:
            if not chinese:
                translated.append(place.names[0])
            if not place.generic:
                add(place.names)
        for name in self.tokenizer.entities(question, chinese=chinese):
            if self.gazetteer.generic(name):
                continue
            if not any(name in n or n in name for g in groups for n in g):
                add(self.aliases.variants(name))
        return groups, translated

    def build(self, question: str, history: Sequence[str] = ()) -> Query:
        chinese = cjk_ratio(question) >= 0.3
        extra: list[str] = []
        for group in self.aliases.mentioned(question):
            extra.extend(n for n in group if n not in fold(question))
        entities, translated = self._entities(question, chinese)
        dense_text = question + (f" ({' '.join(extra)})" if extra else "")
        own = self.tokenizer.tokens(question)
        tokens = list(own)
        for name in extra + translated:
            tokens += self.tokenizer.tokens(name)
        named = {n for g in entities for n in g}
        if not chinese:  # what an English or Vietnamese question asks about, in Chinese
            own = [w for zh in self.glossary.translate(question) for w in (zh, *self.tokenizer.tokens(zh))]
            tokens += own
        content = [
            t
            for t in dict.fromkeys(own)
            if not t.startswith("#")
            and not self.gazetteer.generic(t)
            and not any(t in n or n in t for n in named)
        ]
        turns = [t for t in history if t.strip()][-self.history_turns :] if self.history_turns else []
        history_text = " ".join(turns)
        history_tokens = self.tokenizer.tokens(history_text) if history_text else []
        return Query(question, dense_text, tokens, entities, history_text, history_tokens, content, chinese)
