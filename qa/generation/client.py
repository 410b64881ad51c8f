"""The language model's server, called with the official ``openai`` SDK (whole replies and streams).

Every failure of the server — a timeout, a refused connection, an error status, a reply that is not a
chat completion — becomes one :class:`~qa.errors.UpstreamError` with a short ``kind``; no retries (the
extractive answer is the fallback, and a user should not wait twice).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from qa.config import GenerationSettings
from qa.errors import GenerationUnavailableError, UpstreamError

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)


def _sdk() -> Any:
    try:
        import openai
    except ImportError as exc:
        raise GenerationUnavailableError(
            'generation.backend = "openai" needs the openai package: pip install "zh-news-qa[generation]"'
        ) from exc
    return openai


def _upstream(exc: BaseException) -> UpstreamError:
    sdk = _sdk()
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, sdk.APITimeoutError):
        return UpstreamError("timeout", "no reply in time")
    if isinstance(exc, sdk.APIConnectionError):
        return UpstreamError("connection", str(exc.__cause__ or exc))
    if isinstance(exc, sdk.APIStatusError):
        return UpstreamError(f"status_{exc.status_code}", str(exc.message)[:200])
    return UpstreamError("malformed", f"{type(exc).__name__}: {str(exc)[:200]}")


# what a reply that is not a chat completion raises inside the SDK or while we read it
_MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError, json.JSONDecodeError)


class ChatClient:
    def __init__(self, settings: GenerationSettings) -> None:
        sdk = _sdk()
        self.settings = settings
        self.model = settings.model
        self._client: openai.OpenAI = sdk.OpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key or "unused",  # local servers want none, the SDK wants one
            timeout=settings.timeout_s,
            max_retries=0,
        )
        self._errors: tuple[type[BaseException], ...] = (sdk.OpenAIError, *_MALFORMED)

    def _request(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        s = self.settings
        return {
            "model": s.model,
            "messages": messages,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
        }

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The whole reply's text; UpstreamError when the server fails."""
        try:
            reply = self._client.chat.completions.create(**self._request(messages))
            content = reply.choices[0].message.content
        except self._errors as exc:
            raise _upstream(exc) from exc
        if not isinstance(content, str) or not content.strip():
            raise UpstreamError("malformed", "the reply has no text")
        return content

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """The reply's text in pieces as the server sends them; UpstreamError when it fails, also midway
        or when the whole reply takes longer than ``timeout_s``."""
        deadline = time.monotonic() + self.settings.timeout_s
        try:
            events = self._client.chat.completions.create(**self._request(messages), stream=True)
        except self._errors as exc:
            raise _upstream(exc) from exc
        text = False
        try:
            for event in events:
                if time.monotonic() > deadline:
                    raise UpstreamError("timeout", f"the reply took over {self.settings.timeout_s:g}s")
                if not event.choices:
                    continue  # e.g. a last chunk with usage only
                piece = event.choices[0].delta.content
                if piece:
                    text = text or bool(piece.strip())
                    yield piece
        except self._errors as exc:
            raise _upstream(exc) from exc
        finally:
            events.close()
        if not text:
            raise UpstreamError("malformed", "the streamed reply has no text")
