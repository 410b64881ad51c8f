"""The written answer: ask the model, keep the sentences their passages support, else the extractive one.

The model is asked only for an answer the retrieval found answerable; its reply is checked sentence by
sentence (``qa.generation.check``) before anything is returned or streamed, so a removed sentence is
never shown. When no sentence survives, or the server fails before one did, the answer keeps the
extractive text and says so (``generation.fallback``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

from qa.config import GenerationSettings
from qa.errors import UpstreamError
from qa.generation import metrics, prompt
from qa.generation.check import Evidence, SentenceChecker, Verdict
from qa.generation.client import ChatClient
from qa.generation.sentences import (
    SentenceSplitter,
    ThinkFilter,
    split_sentences,
    strip_markers,
    without_thinking,
)
from qa.records import Answer, Generation, RemovedSentence
from qa.retrieval.gazetteer import Gazetteer
from qa.retrieval.query import AliasTable
from qa.text.tokenize import ChineseTokenizer

log = logging.getLogger(__name__)

Spellings = Callable[[str], Iterable[str]]


def joined(previous: str, sentence: str) -> str:
    """``sentence`` as it follows ``previous``: on a line of its own, like the extractive answer's cited
    sentences (the web page, the CLI and the bot show one line per cited sentence)."""
    return f"\n{sentence}" if previous else sentence


class WrittenStream:
    """Iterate to get the answer's text piece by piece (checked sentences only); ``answer`` is the
    complete answer once the iteration has ended."""

    def __init__(
        self, writer: AnswerWriter, answer: Answer, history: Sequence[str], spellings: Spellings | None
    ):
        self._writer, self._answer, self._history, self._spellings = writer, answer, history, spellings
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        w, answer = self._writer, self._answer
        evidence = w.evidence(answer)
        session = _Session(w, answer, evidence, self._spellings)
        splitter, think = SentenceSplitter(), ThinkFilter()
        error: UpstreamError | None = None
        try:
            for piece in w.client.stream(w.request(answer, self._history)):
                for sentence in splitter.feed(think.feed(piece)):
                    if (shown := session.take(sentence)) is not None:
                        yield shown
            for sentence in splitter.feed(think.close()) + splitter.close():
                if (shown := session.take(sentence)) is not None:
                    yield shown
        except UpstreamError as exc:
            error = exc
        except Exception as exc:  # a fault of ours must not cost the user the answer: logged, counted
            log.exception("generation: unexpected failure while writing the answer")
            error = UpstreamError("internal", f"{type(exc).__name__}: {exc}")
        self.answer = session.finish(error)
        if session.fell_back:
            yield answer.text  # the extractive answer: nothing written was shown


class _Session:
    """The sentences of one reply as they are checked."""

    def __init__(
        self, writer: AnswerWriter, answer: Answer, evidence: list[Evidence], spellings: Spellings | None
    ):
        self.writer, self.answer, self.evidence, self.spellings = writer, answer, evidence, spellings
        self.text = ""
        self.removed: list[RemovedSentence] = []
        self.kept = 0
        self.fell_back = False

    def take(self, sentence: str) -> str | None:
        """The piece to show for ``sentence`` (with its separator), or None when it is removed."""
        if not strip_markers(sentence).strip(" \t。！？!?；;.,，、\"“”'"):
            return None  # markers or punctuation alone
        verdict: Verdict = self.writer.checker.check(sentence, self.evidence, self.spellings)
        if not verdict.supported:
            assert verdict.reason is not None
            self.removed.append(RemovedSentence(sentence.strip(), verdict.reason))
            log.info("generation: removed %r (%s)", sentence.strip(), verdict.reason)
            return None
        piece = joined(self.text, verdict.sentence)
        self.text += piece
        self.kept += 1
        return piece

    def finish(self, error: UpstreamError | None) -> Answer:
        w = self.writer
        metrics.count("sentences_removed", len(self.removed))
        metrics.count("sentences_kept", self.kept)
        if error is not None:
            metrics.upstream_failure(error.kind)
            log.warning(
                "generation: %s at %s failed (%s); %s",
                w.settings.model,
                w.settings.base_url,
                error,
                "keeping the sentences already checked" if self.text else "giving the extractive answer",
            )
        kept = bool(self.text)
        self.fell_back = not kept
        if kept:
            metrics.count("written")
        elif error is None:
            metrics.count("fallback_unsupported")
            log.info("generation: no sentence of the reply was supported; giving the extractive answer")
        report = Generation(
            model=w.settings.model,
            removed=tuple(self.removed),
            fallback=not kept,
            error=error.kind if error is not None else None,
        )
        return dataclasses.replace(
            self.answer, text=self.text if kept else self.answer.text, generation=report
        )


class AnswerWriter:
    def __init__(self, settings: GenerationSettings, checker: SentenceChecker, client: ChatClient) -> None:
        self.settings = settings
        self.checker = checker
        self.client = client

    def evidence(self, answer: Answer) -> list[Evidence]:
        return [Evidence.of(n, hit) for n, hit in enumerate(answer.hits[: self.settings.passages], start=1)]

    def request(self, answer: Answer, history: Sequence[str]) -> list[dict[str, str]]:
        metrics.count("requests")
        return prompt.messages(answer.question, history, answer.hits[: self.settings.passages])

    def write(
        self, answer: Answer, history: Sequence[str] = (), spellings: Spellings | None = None
    ) -> Answer:
        """The answer with a written, checked text; an abstention or an answer without passages as it is."""
        if not answer.answerable or not answer.hits:
            return answer
        session = _Session(self, answer, self.evidence(answer), spellings)
        try:
            reply = self.client.complete(self.request(answer, history))
            for sentence in split_sentences(without_thinking(reply)):
                session.take(sentence)
        except UpstreamError as exc:
            return session.finish(exc)
        except Exception as exc:  # a fault of ours must not cost the user the answer: logged, counted
            log.exception("generation: unexpected failure while writing the answer")
            session.text = ""  # what was checked before the fault is not trusted
            return session.finish(UpstreamError("internal", f"{type(exc).__name__}: {exc}"))
        return session.finish(None)

    def stream(
        self, answer: Answer, history: Sequence[str] = (), spellings: Spellings | None = None
    ) -> WrittenStream | None:
        """The written answer as a stream, or None when there is nothing to write (an abstention)."""
        if not answer.answerable or not answer.hits:
            return None
        return WrittenStream(self, answer, history, spellings)


def make_writer(
    settings: GenerationSettings, tokenizer: ChineseTokenizer, aliases: AliasTable
) -> AnswerWriter | None:
    """The configured writer, or None for the extractive backend. GenerationUnavailableError when the
    openai package is missing."""
    if settings.backend == "extractive":
        return None
    checker = SentenceChecker(tokenizer, aliases, Gazetteer(), settings.min_overlap)
    return AnswerWriter(settings, checker, ChatClient(settings))
