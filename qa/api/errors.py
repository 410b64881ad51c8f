"""The one JSON error shape of the API, and the translation of library errors into HTTP statuses.

Every error response is ``{"error": {"code": str, "message": str}}`` (validation errors add ``details``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from qa.api.schemas import ErrorResponse
from qa.errors import (
    LIBRARY_ERRORS,
    ConfigError,
    CorpusError,
    DocumentNotFoundError,
    EmbeddingsError,
    FetchError,
    IndexStoreError,
    ModelError,
    QAError,
    QuestionError,
    VectorStoreError,
    public_message,
)

log = logging.getLogger(__name__)

# library error → (status, code); the first matching class in this order wins
_LIBRARY_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (QuestionError, 422, "invalid_input"),
    (FetchError, 422, "fetch_failed"),
    (CorpusError, 422, "invalid_document"),
    (DocumentNotFoundError, 404, "not_found"),
    (IndexStoreError, 503, "index_unavailable"),
    (VectorStoreError, 503, "index_unavailable"),
    (ModelError, 503, "model_unavailable"),
    (ConfigError, 500, "configuration_error"),
    (QAError, 400, "bad_request"),
    (EmbeddingsError, 503, "unavailable"),
)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(StarletteHTTPException):
    """An HTTP error with an explicit code; raise it from routes and dependencies."""

    def __init__(
        self, status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=dict(headers or {}))
        self.code = code


def error_body(code: str, message: str, details: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = list(details)
    return {"error": error}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def library_status(exc: QAError | EmbeddingsError) -> tuple[int, str]:
    for cls, status, code in _LIBRARY_ERRORS:
        if isinstance(exc, cls):
            return status, code
    return 400, "bad_request"  # pragma: no cover - both trees' bases are in the table


def _message(exc: QAError | EmbeddingsError) -> str:
    """The client's message: never the operator's detail (paths), which goes to the log instead."""
    if isinstance(exc, CorpusError):
        return exc.reason
    return public_message(exc)


def _loc(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"} and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) or "body"


def _clean(item: Mapping[str, Any]) -> dict[str, Any]:
    """A validation error item without the offending input (it can be huge or not JSON-safe)."""
    return {
        "loc": [str(p) if not isinstance(p, int) else p for p in item.get("loc", ())],
        "msg": str(item.get("msg", "")),
        "type": str(item.get("type", "")),
    }


def validation_response(errors: Sequence[Mapping[str, Any]]) -> JSONResponse:
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        reason = str((first.get("ctx") or {}).get("error", "")) or "cannot be parsed"
        where = tuple(first.get("loc", ()))
        at = f" at position {where[1]}" if len(where) > 1 and isinstance(where[1], int) else ""
        message = f"the request body is not valid JSON: {reason}{at}"
        return error_response(400, "invalid_json", message)
    cleaned = [_clean(e) for e in errors]
    message = "; ".join(f"{_loc(e['loc'])}: {e['msg']}" for e in cleaned) or "invalid request"
    return error_response(422, "invalid_request", message, details=cleaned)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_response(exc.errors())


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI schema documents for this path (Starlette's 405 names only those of the
    first route whose path matches)."""
    app = request.app
    table: list[tuple[re.Pattern[str], frozenset[str]]] | None = getattr(app.state, "path_methods", None)
    if table is None:
        table = [
            (compile_path(path)[0], frozenset(m.upper() for m in operations if m in _HTTP_METHODS))
            for path, operations in app.openapi().get("paths", {}).items()
        ]
        app.state.path_methods = table
    path = request.scope.get("path", "")
    return sorted({method for pattern, methods in table if pattern.match(path) for method in methods})


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    headers = dict(exc.headers or {})
    if status == 405:
        allowed = allowed_methods(request)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
    code = exc.code if isinstance(exc, ApiError) else _CODES.get(status, "error")
    message = str(exc.detail) if exc.detail else HTTPStatus(status).phrase
    if status in (404, 405) and message == HTTPStatus(status).phrase:  # Starlette's routing misses
        message = f"{message}: {request.method} {request.url.path}"
    if message == "There was an error parsing the body":  # FastAPI could not decode or parse the body
        cause = exc.__cause__
        if isinstance(cause, UnicodeDecodeError):
            code, message = "invalid_encoding", f"the request body is not valid UTF-8 (byte {cause.start})"
        else:
            code, message = "invalid_body", "the request body cannot be parsed"
    return error_response(status, code, message, headers=headers)


async def _on_library(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LIBRARY_ERRORS)
    status, code = library_status(exc)
    message, headers = _message(exc), None
    if isinstance(exc, (IndexStoreError, VectorStoreError)):
        headers = {"Retry-After": "5"}
        readiness = getattr(request.app.state, "readiness", None)
        if readiness is not None and not readiness.ready and readiness.error is None:
            code, message = "not_ready", "the index is still loading; try again shortly"
    if status >= 500:  # the operator's detail (paths) goes to the log; the client got the public message
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    return error_response(status, code, message, headers=headers)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error; the details are in the server log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    for base in LIBRARY_ERRORS:
        app.add_exception_handler(base, _on_library)
    app.add_exception_handler(Exception, _on_unexpected)


def _example(code: str, message: str) -> dict[str, Any]:
    return {"application/json": {"example": error_body(code, message)}}


ERROR_EXAMPLES: dict[int, tuple[str, str, str]] = {
    400: ("Malformed request (invalid JSON or UTF-8)", "invalid_json", "the request body is not valid JSON"),
    401: (
        "Missing or wrong API key",
        "unauthorized",
        "a valid API key is required: Authorization: Bearer <key>",
    ),
    403: (
        "A read-only API key on a write, or a cross-site write (Origin not allowed)",
        "read_only_key",
        "this API key is read-only: adding, replacing or deleting articles needs a full-access key",
    ),
    404: ("Unknown article", "not_found", "no article with doc_id 'x'"),
    413: ("Request body too large", "payload_too_large", "the request body is over 1000000 bytes"),
    415: ("Wrong content type", "unsupported_media_type", "send application/json"),
    422: ("Invalid input", "invalid_input", "the question is empty"),
    429: (
        "Rate limit reached; retry after the Retry-After header's seconds",
        "rate_limited",
        "too many requests: at most 60 per 1 minute for this client; retry in 12 s",
    ),
    503: ("Index not loaded yet", "index_unavailable", "the engine has no index loaded"),
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error statuses, all with the ErrorResponse model."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, code, message = ERROR_EXAMPLES[status]
        out[status] = {"model": ErrorResponse, "description": description, "content": _example(code, message)}
    return out
