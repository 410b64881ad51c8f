"""Question answering with verifiable citations over Chinese news articles.

In-process use (a bot, a notebook)::

    from qa import Engine, load_settings
    engine = Engine(load_settings()).open()        # builds model and index on first use
    answer = engine.ask("胡志明市与中国多少个地方保持友好合作关系?")
    answer.answerable, answer.text, answer.hits[0].chunk.start
"""

from qa.config import Settings, load_settings
from qa.engine import Engine, Filters
from qa.errors import (
    ConfigError,
    CorpusError,
    DocumentNotFoundError,
    EmbeddingsError,
    IndexCorruptError,
    IndexMismatchError,
    IndexStoreError,
    ModelError,
    QAError,
    QuestionError,
    VectorStoreError,
)
from qa.records import Answer, Article, Chunk, Hit, Section, Segment

__all__ = [
    "Answer",
    "Article",
    "Chunk",
    "ConfigError",
    "CorpusError",
    "DocumentNotFoundError",
    "EmbeddingsError",
    "Engine",
    "Filters",
    "Hit",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexStoreError",
    "ModelError",
    "QAError",
    "QuestionError",
    "Section",
    "Segment",
    "Settings",
    "VectorStoreError",
    "load_settings",
]
