"""Turn a question (and the conversation's earlier user turns) into what the searchers need."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from qa.retrieval.tokenize import ChineseTokenizer
from qa.textnorm import fold


@dataclass(frozen=True)
class Query:
    question: str
    dense_text: str  # the question with the other spellings of its names appended
    tokens: list[str]  # BM25 tokens, alias spellings included
    entities: list[tuple[str, ...]]  # each: the spellings of one name the answer must mention
    history_text: str = ""  # earlier user turns used as context ("" when none)
    history_tokens: list[str] = field(default_factory=list)


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
    def __init__(self, tokenizer: ChineseTokenizer, aliases: AliasTable, history_turns: int) -> None:
        self.tokenizer = tokenizer
        self.aliases = aliases
        self.history_turns = history_turns

    def build(self, question: str, history: Sequence[str] = ()) -> Query:
        extra: list[str] = []
        for group in self.aliases.mentioned(question):
            extra.extend(n for n in group if n not in fold(question))
        dense_text = question + (f" ({' '.join(extra)})" if extra else "")
        tokens = self.tokenizer.tokens(question) + [t for n in extra for t in self.tokenizer.tokens(n)]
        entities: list[tuple[str, ...]] = []
        for name in self.tokenizer.entities(question):
            group = self.aliases.variants(name)
            if group not in entities:
                entities.append(group)
        turns = [t for t in history if t.strip()][-self.history_turns :] if self.history_turns else []
        history_text = " ".join(turns)
        history_tokens = self.tokenizer.tokens(history_text) if history_text else []
        return Query(question, dense_text, tokens, entities, history_text, history_tokens)
