"""The chat-style answer: the key sentence of each cited passage, with [n] markers in passage order."""

from __future__ import annotations

from collections.abc import Sequence

from qa.records import Hit
from qa.text.normalize import SENTENCE, char_bigrams, fold

NO_ANSWER = "所检索的新闻中没有找到能回答这个问题的内容。"


def _grams(text: str) -> set[str]:
    return set("".join(fold(text).split())) | char_bigrams(text)


def best_sentence(text: str, question: str) -> tuple[int, int]:
    """Offsets (within ``text``) of the sentence sharing the most characters and bigrams with the question."""
    wanted = _grams(question)
    best, best_score = (0, len(text)), -1.0
    for match in SENTENCE.finditer(text):
        sentence = match.group().strip()
        if not sentence:
            continue
        grams = _grams(sentence)
        score = len(grams & wanted) / (1 + 0.01 * len(sentence))
        if score > best_score:
            start = match.start() + match.group().index(sentence)
            best, best_score = (start, start + len(sentence)), score
    return best


def key_of(hit: Hit, question: str) -> tuple[int, int]:
    """The passage's key sentence: the one the pipeline chose, else the one sharing most with the question."""
    return hit.key if hit.key is not None else best_sentence(hit.chunk.text, question)


def compose(question: str, hits: Sequence[Hit], answerable: bool, reason: str = "", lines: int = 3) -> str:
    """The key sentence of the first passage with its [n] marker, then those of the next passages that
    also hold what is asked (no filler: a passage that only supports the first adds no line); a sentence
    is quoted once."""
    if not answerable or not hits:
        return NO_ANSWER + (f"（{reason}）" if reason else "")
    out: list[str] = []
    quoted: set[str] = set()
    for number, hit in enumerate(hits, start=1):
        if out and not hit.answers:
            continue
        start, end = key_of(hit, question)
        sentence = hit.chunk.text[start:end]
        if sentence in quoted:  # overlapping passages share sentences
            continue
        quoted.add(sentence)
        out.append(f"{sentence} [{number}]")
        if len(out) == lines:
            break
    return "\n".join(out)
