"""ASGI middleware: the request id (echoed, logged, put on jobs), an access log line and metrics per request, the
security headers of every response, and the upload size limit, checked against Content-Length first and counted
while the body streams in."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Mapping
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubescribe.gateway import metrics
from kubescribe.gateway.errors import INTERNAL_ERROR, ApiError, error_body, error_response

log = logging.getLogger("kubescribe.gateway.access")

request_id: ContextVar[str] = ContextVar("request_id", default="")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
FORM_OVERHEAD = 1 << 20
"""Bytes a multipart body may have on top of the file: boundaries and the other fields."""


PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""The web page's: its own script and style files only (no inline ones); the icon is a data: URL."""
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
"""FastAPI's /docs and /redoc: an inline script, and Swagger UI and ReDoc from their CDN."""
DOCS_PATHS = ("/docs", "/redoc")


def content_security_policy(path: str) -> str:
    return DOCS_POLICY if path.startswith(DOCS_PATHS) else PAGE_POLICY


def security_headers(path: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", content_security_policy(path).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]


def choose_request_id(given: str | None) -> str:
    return given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestContext:
    """The request id, the security headers of every response, an access log line and the request's metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = choose_request_id(_header(scope, b"x-request-id"))
        request_id.set(rid)
        started, status = time.monotonic(), 500
        headers = [(b"x-request-id", rid.encode()), *security_headers(scope["path"])]

        started_response = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as error:
            if started_response:
                raise  # the answer is broken off: the server closes the connection
            # Answered here rather than by an exception handler, after which the server would close the connection.
            log.error("unexpected error", exc_info=error)
            await error_response(500, INTERNAL_ERROR)(scope, receive, send_with_headers)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            elapsed = time.monotonic() - started
            metrics.requests.labels(scope["method"], route, str(status)).inc()
            metrics.request_seconds.labels(route).observe(elapsed)
            log.info(
                "%s %s %d",
                scope["method"],
                route,
                status,
                extra={"status": status, "seconds": round(elapsed, 4), "path": scope["path"]},
            )


class BodyLimit:
    """Answers 413 when a request body is (or says it is) larger than `limit` plus the multipart overhead, or than
    the limit `paths` gives its path (a batch's, whose route holds each of its files to `limit`)."""

    def __init__(self, app: ASGIApp, limit: int, paths: Mapping[str, int] | None = None) -> None:
        self.app, self.limit, self.paths = app, limit + FORM_OVERHEAD, dict(paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope["path"], self.limit)
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _send_json(send, 413, error_body(413, f"the request body is larger than {limit} bytes"))
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise ApiError(413, f"the request body is larger than {limit} bytes", param="file")
            return message

        await self.app(scope, counting_receive, send)


async def _send_json(send: Send, status: int, body: object) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
