"""Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, for every endpoint."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_error",
    504: "timeout_error",
}


class ApiError(HTTPException):
    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, message, headers)
        self.param, self.code = param, code


RETRY_AFTER_SECONDS = 5


class Unavailable(ApiError):
    """A service the gateway needs (the Kubernetes API server, the object store) cannot be reached, does not answer in
    time or fails: 503, to be tried again."""

    def __init__(self, service: str) -> None:
        message = f"{service} is unavailable; try again in a few seconds"
        super().__init__(503, message, code="service_unavailable", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def error_body(status_code: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": TYPES.get(status_code, "server_error"), "param": param, "code": code}}


def error_response(status_code: int, message: str, **kwargs: Any) -> JSONResponse:
    headers = kwargs.pop("headers", None)
    return JSONResponse(error_body(status_code, message, **kwargs), status_code, headers=headers)


async def http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    param, code = getattr(error, "param", None), getattr(error, "code", None)
    return error_response(error.status_code, str(error.detail), param=param, code=code, headers=error.headers)


async def validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0] if error.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    param = ".".join(location) or None
    message = f"{param}: {first.get('msg', 'invalid')}" if param else str(first.get("msg", "invalid request"))
    return error_response(400, message, param=param)


INTERNAL_ERROR = "internal error; the request id names it in the gateway's log"
"""The message of every 500: what went wrong is logged, never told."""
