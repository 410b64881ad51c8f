"""The articles: list, read, add or replace (JSON or file upload), delete."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from qa.api.deps import EngineDep, is_json, media_type
from qa.api.errors import ApiError, responses
from qa.api.schemas import (
    DOC_ID_SCHEMA,
    DocumentCreated,
    DocumentDetail,
    DocumentIn,
    DocumentPage,
    DocumentSummary,
    DocumentUrlIn,
    SegmentOut,
)
from qa.documents import NewDocument, check_doc_id, document_from_upload
from qa.engine import Engine
from qa.errors import DocumentNotFoundError, QuestionError
from qa.index.search_index import SearchIndex
from qa.records import Article

router = APIRouter(tags=["documents"])

DocId = Annotated[
    str,
    PathParam(
        description="The article's id (letters, digits, `_`, `-`, `.`).",
        examples=["000_a2194725df4ab5f6"],
        json_schema_extra=DOC_ID_SCHEMA,
    ),
]

_DOC_ID = re.compile(r"\w[\w.\-]{0,199}")


def checked_doc_id(doc_id: str) -> str:
    """422 unless ``doc_id`` is safe as a file name: the whole string must match (a trailing newline,
    which ``$`` lets through, is not a doc_id), then the library's own check."""
    if not isinstance(doc_id, str) or _DOC_ID.fullmatch(doc_id) is None:
        raise QuestionError(
            f"invalid doc_id {doc_id!r}: use 1-200 letters, digits, '_', '-' or '.', not starting with a dot"
        )
    return check_doc_id(doc_id)


def summary(index: SearchIndex, article: Article) -> DocumentSummary:
    sections = index.sections_of(article.doc_id)
    return DocumentSummary(
        doc_id=article.doc_id,
        title=article.title,
        date=article.date,
        url=article.url,
        source=Path(article.source.split("#", 1)[0]).name,
        passages=sum(sections.values()),
        sections=sections,
        fetched_at=article.fetched_at,
        other_urls=list(article.other_urls),
    )


def _article(index: SearchIndex, doc_id: str) -> Article:
    checked_doc_id(doc_id)
    article = index.articles.get(doc_id)
    if article is None:
        raise DocumentNotFoundError(doc_id)
    return article


@router.get(
    "/v1/documents",
    response_model=DocumentPage,
    summary="List the articles",
    description="One page of the articles in the index, ordered by doc_id.",
    responses=responses(401, 422, 503),
)
async def list_documents(
    engine: EngineDep,
    offset: Annotated[int, Query(ge=0, description="How many articles to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many articles.")] = 50,
) -> DocumentPage:
    index = engine.index
    ids = sorted(index.articles)
    items = [summary(index, index.articles[d]) for d in ids[offset : offset + limit]]
    return DocumentPage(items=items, total=len(ids), offset=offset, limit=limit)


@router.get(
    "/v1/documents/{doc_id}",
    response_model=DocumentDetail,
    summary="Read one article",
    description=(
        "The article's whole text with its indexed segments. A cited passage is "
        "`text[passage.start:passage.end]`, so a page can show it highlighted inside its article."
    ),
    responses=responses(401, 404, 422, 503),
)
async def get_document(doc_id: DocId, engine: EngineDep) -> DocumentDetail:
    index = engine.index
    article = _article(index, doc_id)
    return DocumentDetail(
        **summary(index, article).model_dump(),
        text=article.text,
        segments=[
            SegmentOut(section=s.section.value, start=s.start, end=s.end, heading=s.heading or None)
            for s in article.segments
        ],
    )


_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [DocumentIn.model_json_schema(), DocumentUrlIn.model_json_schema()]}
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "A .txt or .md news page, UTF-8.",
                        },
                        "doc_id": {
                            "type": "string",
                            "description": "The article's id; default: the file name without extension.",
                            "pattern": DOC_ID_SCHEMA["pattern"],
                        },
                    },
                }
            },
        },
    }
}


def _is_url_request(raw: bytes) -> bool:
    """``{"url": …}`` without ``text``: a page to fetch (anything else is validated as a document)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # the model's validation reports these
        return False
    return isinstance(data, dict) and "url" in data and "text" not in data and "doc_id" not in data


async def _json_document(request: Request) -> NewDocument | DocumentUrlIn:
    raw = await request.body()
    try:
        if _is_url_request(raw):
            return DocumentUrlIn.model_validate_json(raw)
        doc = DocumentIn.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None
    return NewDocument(doc_id=doc.doc_id, text=doc.text, title=doc.title, date=doc.date, url=doc.url)


async def _fetch_document(request: Request, response: Response, engine: Engine, url: str) -> DocumentCreated:
    """Fetch the page and add it (qa.live.pages): 201 when stored, 200 when it was already (the same
    page unchanged, or a copy of a stored story: then the stored article is returned)."""
    outcome = await run_in_threadpool(request.app.state.live.ingester.ingest, url)
    assert outcome.doc_id is not None  # ingest raises instead of failing
    article = engine.index.articles[outcome.doc_id]
    response.status_code = 201 if outcome.status in ("added", "updated") else 200
    response.headers["Location"] = f"/v1/documents/{quote(article.doc_id, safe='')}"
    status = outcome.status if outcome.status != "failed" else None
    return DocumentCreated(
        **summary(engine.index, article).model_dump(), replaced=outcome.status == "updated", outcome=status
    )


async def _uploaded_document(request: Request) -> NewDocument:
    async with request.form(max_files=1, max_fields=10) as form:
        upload = form.get("file")
        doc_id = form.get("doc_id")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "invalid_request", "file: the form needs a file field named 'file'")
        if doc_id is not None and not isinstance(doc_id, str):
            raise ApiError(422, "invalid_request", "doc_id: must be a text field")
        raw = await upload.read()
        return document_from_upload(upload.filename or "", raw, doc_id or None)


@router.post(
    "/v1/documents",
    status_code=201,
    response_model=DocumentCreated,
    summary="Add or replace an article",
    description=(
        "Send JSON (`doc_id`, `text`, optional `title`, `date`, `url`) or a multipart form with a .txt/.md "
        "`file` (and optional `doc_id`). An article with the same doc_id is replaced. The article is "
        "stored in the corpus folder and searchable when the call returns. "
        'Or send `{"url": …}`: the page is fetched (http/https, size and time limits, robots.txt) and '
        "its title, date, body and related-news teasers extracted; 422 `fetch_failed` says why a page "
        "could not be had, and a copy of a stored story is not stored again (200, `outcome: duplicate`)."
    ),
    responses={
        201: {"headers": {"Location": {"description": "The article's URL.", "schema": {"type": "string"}}}},
        **responses(400, 401, 403, 413, 415, 422, 429, 503),
    },
    openapi_extra=_UPLOAD_SCHEMA,
)
async def add_document(request: Request, response: Response, engine: EngineDep) -> DocumentCreated:
    media = media_type(request)
    if is_json(media):
        doc = await _json_document(request)
        if isinstance(doc, DocumentUrlIn):
            return await _fetch_document(request, response, engine, doc.url)
    elif media == "multipart/form-data":
        doc = await _uploaded_document(request)
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send application/json or multipart/form-data, got {request.headers.get('content-type')!r}",
        )
    checked_doc_id(doc.doc_id)
    replaced = doc.doc_id in engine.index.articles
    article = await run_in_threadpool(engine.add_document, doc)
    response.headers["Location"] = f"/v1/documents/{quote(article.doc_id, safe='')}"
    return DocumentCreated(**summary(engine.index, article).model_dump(), replaced=replaced)


@router.delete(
    "/v1/documents/{doc_id}",
    status_code=204,
    response_class=Response,
    summary="Delete an article",
    description="Removes the article from the corpus folder and the index; it is never cited again.",
    responses=responses(401, 403, 404, 422, 429, 503),
)
async def delete_document(doc_id: DocId, engine: EngineDep) -> Response:
    checked_doc_id(doc_id)
    await run_in_threadpool(engine.delete_document, doc_id)
    return Response(status_code=204)
