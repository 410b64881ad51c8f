"""GET / (the web chat page from qa/static) and the /static files, when a page is installed."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

_PLACEHOLDER = """<!doctype html>
<html lang="zh"><head><meta charset="utf-8"><title>中文新闻问答</title></head>
<body><h1>中文新闻问答 / Chinese news QA</h1>
<p>The web page is not installed. The API is described at <a href="/docs">/docs</a>.</p>
</body></html>
"""


def web_router(static_dir: Path) -> APIRouter:
    router = APIRouter(tags=["web"])

    @router.get(
        "/",
        response_class=HTMLResponse,
        summary="The web chat page",
        description="The chat page (qa/static/index.html), or a short note when it is not installed.",
    )
    async def index_page() -> Response:
        page = static_dir / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html; charset=utf-8")
        return HTMLResponse(_PLACEHOLDER)

    return router


def mount_web(app: FastAPI, static_dir: Path = STATIC_DIR) -> None:
    app.include_router(web_router(static_dir))
    if static_dir.is_dir():
        app.mount("/static", StaticFiles(directory=static_dir), name="static")
