"""Written answers from an OpenAI-compatible language model, every sentence checked against its citation.

``prompt`` builds the request from the question, the earlier turns and the numbered passages; ``client``
calls the server with the official ``openai`` SDK (whole replies and streams); ``sentences`` cuts a reply
into sentences with their [n] markers, also while it streams; ``check`` keeps a sentence only when the
passages it cites hold its numbers, dates, names and quoted words; ``writer`` puts these together and
falls back to the extractive answer; ``metrics`` counts what happened.
"""

from __future__ import annotations

from qa.generation.metrics import generation_counters
from qa.generation.writer import AnswerWriter, WrittenStream, make_writer

__all__ = ["AnswerWriter", "WrittenStream", "generation_counters", "make_writer"]
