"""The FastAPI application."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from kubescribe.gateway import errors
from kubescribe.gateway.access.caller import Access
from kubescribe.gateway.middleware import BodyLimit, RequestContext
from kubescribe.gateway.routes import jobs, openai, ops
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
    app.add_exception_handler(RequestValidationError, errors.validation_error)
    app.add_exception_handler(Exception, errors.unexpected_error)
    for router in (jobs.router, openai.router, ops.router):
        app.include_router(router)
    if STATIC.is_dir():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="static")
    app.add_middleware(BodyLimit, limit=gateway.settings.max_upload_bytes)
    app.add_middleware(RequestContext)
    return app
