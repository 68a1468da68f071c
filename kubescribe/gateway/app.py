"""The FastAPI application."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from kubescribe.gateway import errors
from kubescribe.gateway.access.caller import Access
from kubescribe.gateway.middleware import FORM_OVERHEAD, BodyLimit, RequestContext
from kubescribe.gateway.routes import batches, jobs, openai, ops
from kubescribe.gateway.routes.document import allowed_methods, openapi_document
from kubescribe.gateway.state import Gateway

log = logging.getLogger("kubescribe.gateway")

STATIC = Path(__file__).parent / "static"
UPLOAD_SWEEP_SECONDS = 600.0
DESCRIPTION = """Transcription jobs on Kubernetes. Authenticate with an API key (`Authorization: Bearer <key>` or
`X-API-Key: <key>`); each key sees only its own namespace's jobs. `/v1/audio/*` follows OpenAI's audio API."""


async def every(seconds: float, work: Callable[[], object]) -> None:
    """Runs blocking `work` in a thread now and then every `seconds`, for as long as the application runs."""
    while True:
        try:
            await asyncio.to_thread(work)
        except Exception as error:
            log.warning("%s failed (%s); trying again later", getattr(work, "__name__", work), type(error).__name__)
        await asyncio.sleep(seconds)


def create_app(gateway: Gateway, access: Access) -> FastAPI:
    settings = gateway.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gateway.watcher.start()
        background = [
            asyncio.create_task(every(settings.keys_cache_seconds, access.keys.refresh)),
            asyncio.create_task(
                every(min(UPLOAD_SWEEP_SECONDS, settings.abandoned_upload_seconds), gateway.abort_abandoned_uploads)
            ),
        ]
        yield
        for task in background:
            task.cancel()
        gateway.watcher.stop()

    app = FastAPI(title="Kubescribe", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.gateway, app.state.access = gateway, access
    app.add_exception_handler(HTTPException, errors.http_error)
    app.add_exception_handler(404, unrouted)
    app.add_exception_handler(405, unrouted)
    app.add_exception_handler(RequestValidationError, errors.validation_error)
    for router in (jobs.router, batches.router, openai.router, ops.router):
        app.include_router(router)
    if STATIC.is_dir():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="static")
    batch_limit = settings.max_batch_files * (settings.max_upload_bytes + FORM_OVERHEAD)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes, paths={batches.router.prefix: batch_limit})
    app.add_middleware(RequestContext)

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app, gateway.settings)
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
    return app


STATIC_METHODS = "GET, HEAD"


async def unrouted(request: Request, error: Exception) -> JSONResponse:
    """A 404 or 405: where the API document has the path but not the method, 405 with the document's methods in
    `Allow` (the web page's files, mounted at /, would answer 404 or take only theirs); other 405s are the files'."""
    assert isinstance(error, HTTPException)
    allow = allowed_methods(request.app.openapi()["paths"], request.url.path)
    if allow is not None and request.method not in allow.split(", "):
        message = f"{request.method} is not allowed here; allowed: {allow}"
        return errors.error_response(405, message, headers={"Allow": allow})
    if error.status_code == 405:
        return errors.error_response(405, f"{request.method} is not allowed here", headers={"Allow": STATIC_METHODS})
    return await errors.http_error(request, error)
