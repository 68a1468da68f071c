"""The shapes of the API's answers, for validation and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from kubescribe.api.v1alpha1 import Phase

JOB_EXAMPLE: JsonDict = {
    "id": "tj-4k2m9x0q7a1b",
    "namespace": "team-a",
    "phase": "Running",
    "finished": False,
    "created": "2025-01-01T12:00:00Z",
    "filename": "interview.mp3",
    "model": "tiny.en",
    "language": "en",
    "task": "transcribe",
    "formats": ["json", "srt"],
    "progress": {"percent": 42.0, "processedSeconds": 25.2, "durationSeconds": 60.0, "etaSeconds": 8.1},
    "result": None,
    "error": None,
    "status_url": "/v1/jobs/tj-4k2m9x0q7a1b",
}


class ProgressView(BaseModel):
    percent: float | None = None
    processedSeconds: float | None = None
    durationSeconds: float | None = None
    etaSeconds: float | None = None


class ErrorView(BaseModel):
    reason: str
    message: str


class JobView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [JOB_EXAMPLE]})

    id: str
    namespace: str
    phase: Phase
    finished: bool = Field(description="Whether the phase is one the job never leaves: Succeeded, Failed, Cancelled.")
    created: str | None
    filename: str | None
    model: str | None
    language: str | None
    task: str
    formats: list[str]
    progress: ProgressView | None
    result: dict[str, Any] | None = Field(description="The TranscriptionJob's status.result once it succeeded.")
    error: ErrorView | None
    status_url: str


class JobList(BaseModel):
    jobs: list[JobView]
    next_page_token: str | None


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"error": {"message": "invalid API key", "type": "authentication_error"}}]}
    )

    error: ErrorDetail


class ModelView(BaseModel):
    id: str
    object: str = "model"
    owned_by: str = "kubescribe"


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelView]


class Readiness(BaseModel):
    status: str
    checks: dict[str, bool] = Field(
        description="Whether each thing the gateway needs is up or fresh: kubernetes, s3, watch, keys."
    )


class NotReady(ErrorBody):
    """The error, naming what is down, and the checks."""

    status: str
    checks: dict[str, bool]


ERRORS: dict[int, str] = {
    400: "The request is malformed: a parameter outside its schema, or a form that cannot be parsed.",
    401: "No credential, or one the gateway does not know.",
    403: "The credential may not do this in its namespace.",
    404: "No such job in the caller's namespace, or no such transcript of it.",
    409: "The job is not finished: it has no transcript yet.",
    413: "The body is larger than the gateway's upload limit.",
    415: "The body is not multipart/form-data, or its file does not decode as audio.",
    429: "Over a limit: the caller's request rate or open requests, failed credentials from its address, or its "
    "namespace's waiting jobs. Retry-After says when to try again.",
    500: "The transcription failed for a reason other than its audio.",
    503: "Kubernetes or the object store cannot be reached. Retry-After says when to try again.",
    504: "The transcription took longer than the gateway waits for it.",
}
"""Each status code an error may have, and what it means; every error's body is an ErrorBody."""
CALLER_ERRORS = (401, 403, 429, 503)
"""What any request that names a caller may be answered before the route runs."""


def or_empty(pattern: str) -> str:
    """`pattern` (anchored) or the empty string: an empty form field is taken as omitted."""
    return f"^$|{pattern}"


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": ERRORS[code]} for code in sorted(codes)}
