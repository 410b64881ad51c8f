"""A reply cut into sentences, each with the [n] markers that follow it; also piece by piece as it streams.

A sentence ends at 。！？!?；; (a full stop only before a space, a marker or the end, so 1.5 stays whole)
or a newline, and takes with it the closing quotes, markers and spaces right after. While streaming, a
sentence is complete only once something else follows it: the markers of a sentence may arrive later.
"""

from __future__ import annotations

import re

# [1], [1, 2], [1][2], [1-3], 【1】 (full-width brackets too)
MARKER = re.compile(r"[\[【]\s*(\d{1,3}(?:\s*[-–,，、]\s*\d{1,3})*)\s*[\]】]")
_END = re.compile(r"[。！？!?；;]|\.(?=\s|$|[\[【])|\n")
_TAIL = re.compile(rf"(?:[。！？!?；;.\"”’」』)）]|\s|{MARKER.pattern})*")
_OPEN_MARKER = re.compile(r"[\[【][\s\d,，、\-–]*$")
# a full stop that ends an abbreviation (U.S., e.g., Mr.), not a sentence
_ABBREVIATION = re.compile(
    r"(?:(?<![A-Za-z])(?:[A-Za-z]\.){2,}|\b(?:Mr|Mrs|Ms|Dr|Prof|St|No|Co|Ltd|Inc|Jr|Sr|vs|etc|Gen|Gov|Sen|Rep)\.)$"
)


def markers(sentence: str) -> list[int]:
    """The passage numbers a sentence cites, in order, once each."""
    found: list[int] = []
    for match in MARKER.finditer(sentence):
        for part in re.split(r"\s*[,，、]\s*", match.group(1)):
            bounds = [int(n) for n in re.split(r"\s*[-–]\s*", part)]
            numbers = (
                range(bounds[0], bounds[-1] + 1)
                if len(bounds) == 2 and bounds[1] - bounds[0] < 50
                else bounds
            )
            found.extend(n for n in numbers if n not in found)
    return found


def strip_markers(sentence: str) -> str:
    """The sentence's words without its markers."""
    return " ".join(MARKER.sub(" ", sentence).split())


def canonical(sentence: str) -> str:
    """The sentence with each group of markers written [1][2] (what the web page and bot link)."""
    return MARKER.sub(lambda m: "".join(f"[{n}]" for n in markers(m.group())), sentence).strip()


class SentenceSplitter:
    """Feed it a reply in pieces; it returns each sentence once it is complete."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, piece: str) -> list[str]:
        self._buffer += piece
        return self._drain(final=False)

    def close(self) -> list[str]:
        """The remaining sentences at the end of the reply (the last one needs no end punctuation)."""
        out = self._drain(final=True)
        rest, self._buffer = self._buffer.strip(), ""
        return [*out, rest] if rest else out

    def _drain(self, *, final: bool) -> list[str]:
        out: list[str] = []
        while (end := self._boundary(final)) is not None:
            sentence, self._buffer = self._buffer[:end].strip(), self._buffer[end:]
            if sentence:
                out.append(sentence)
        return out

    def _boundary(self, final: bool) -> int | None:
        match = _END.search(self._buffer)
        while (
            match is not None and match.group() == "." and _ABBREVIATION.search(self._buffer, 0, match.end())
        ):
            match = _END.search(self._buffer, match.end())  # U.S., Mr., e.g. end no sentence
        if match is None:
            return None
        if not final and match.group() == "." and match.end() == len(self._buffer):
            return None  # a decimal point, perhaps
        end = _TAIL.match(self._buffer, match.end())
        stop = end.end() if end else match.end()
        if not final and (stop == len(self._buffer) or _OPEN_MARKER.search(self._buffer, stop)):
            return None  # markers or closing quotes may still follow
        return stop


def split_sentences(text: str) -> list[str]:
    """A whole reply's sentences."""
    splitter = SentenceSplitter()
    return [*splitter.feed(text), *splitter.close()]


class ThinkFilter:
    """Drops a reasoning model's ``<think>…</think>`` block (Qwen3, DeepSeek-R1 under Ollama or vLLM
    write it into the content) from a reply, also while it streams."""

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self._buffer = ""
        self._inside = False

    def feed(self, piece: str) -> str:
        self._buffer += piece
        out: list[str] = []
        while self._buffer:
            if self._inside:
                end = self._buffer.find(self.CLOSE)
                if end < 0:
                    self._buffer = self._buffer[-len(self.CLOSE) :]  # the rest is thought
                    break
                self._buffer, self._inside = self._buffer[end + len(self.CLOSE) :], False
                continue
            start = self._buffer.find(self.OPEN)
            if start >= 0:
                out.append(self._buffer[:start])
                self._buffer, self._inside = self._buffer[start + len(self.OPEN) :], True
                continue
            keep = next(
                (n for n in range(len(self.OPEN) - 1, 0, -1) if self._buffer.endswith(self.OPEN[:n])), 0
            )  # a tag may be arriving
            out.append(self._buffer[: len(self._buffer) - keep])
            self._buffer = self._buffer[len(self._buffer) - keep :]
            break
        return "".join(out)

    def close(self) -> str:
        rest = "" if self._inside else self._buffer
        self._buffer = ""
        return rest


def without_thinking(text: str) -> str:
    """A whole reply without its ``<think>…</think>`` blocks."""
    think = ThinkFilter()
    return think.feed(text) + think.close()
