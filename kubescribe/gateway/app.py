"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
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

STATIC = Path(__file__).parent / "static"
DESCRIPTION = """Transcription jobs on Kubernetes. Authenticate with an API key (`Authorization: Bearer <key>` or
`X-API-Key: <key>`); each key sees only its own namespace's jobs. `/v1/audio/*` follows OpenAI's audio API."""


def create_app(gateway: Gateway, access: Access) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gateway.watcher.start()
        yield
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
