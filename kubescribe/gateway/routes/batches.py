"""/v1/batches: submit many files (or sources) with one set of options, follow them together, cancel what is left."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from kubescribe.api.v1alpha1 import URL_MAX_LENGTH, is_finished
from kubescribe.gateway.errors import ApiError
from kubescribe.gateway.intake.batch import BatchSubmitted, in_pool, submit_sources, submit_uploads
from kubescribe.gateway.intake.batch_upload import BatchRoute, is_json
from kubescribe.gateway.intake.resource import BATCH_LABEL, is_batch_id
from kubescribe.gateway.intake.upload import FILE_FIELD
from kubescribe.gateway.middleware import FORM_OVERHEAD
from kubescribe.gateway.routes.batch_views import batch_cancelled_view, batch_created_view, batch_view
from kubescribe.gateway.routes.deps import AccessDep, CallerDep, GatewayDep
from kubescribe.gateway.routes.schemas import (
    CALLER_ERRORS,
    BatchCancelled,
    BatchCreated,
    BatchSources,
    BatchView,
    JobOptions,
    errors,
)
from kubescribe.gateway.settings import GatewaySettings

router = APIRouter(prefix="/v1/batches", tags=["batches"], route_class=BatchRoute)

SOURCE_JSON_BYTES = 6 * URL_MAX_LENGTH
"""The most one source takes in a JSON body: every character of the longest escaped."""
BATCH_RULES = (
    "A multipart form of `file` parts (each one job, with the form's options), or a JSON object of `sources` and "
    "the same options. Each file must decode as audio (at least 0.1 s of it), else 415, and fit the gateway's "
    "upload limit, else 413: rules of the files' content that their schema cannot state. A batch is refused whole "
    "(nothing is created) when any file or source is, or when the namespace has no room for all of its jobs "
    "waiting (429). Should the API server fail midway, the jobs created stay and `not_created` names the rest."
)


def max_json_bytes(settings: GatewaySettings) -> int:
    return settings.max_batch_files * SOURCE_JSON_BYTES + FORM_OVERHEAD


def validated(model: type[BaseModel], data: Any, *, strict: bool) -> Any:
    """`data` as `model`, or 400 naming the first field that is wrong."""
    try:
        if isinstance(data, bytes):
            return model.model_validate_json(data, strict=strict)
        return model.model_validate(data, strict=strict)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise ApiError(400, f"{param}: {first['msg']}" if param else first["msg"], param=param) from None


def form_fields(form: FormData) -> dict[str, str]:
    """The form's fields besides its files; the last of a repeated one, as for POST /v1/jobs."""
    return {name: value for name, value in form.multi_items() if name != FILE_FIELD and isinstance(value, str)}


async def json_body(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"the request body is larger than {limit} bytes")
    return bytes(body)


@router.post(
    "",
    status_code=202,
    response_model=BatchCreated,
    responses=errors(*CALLER_ERRORS, 400, 413, 415),
    summary="Submit a batch: many audio files, or sources, with one set of options",
    description=BATCH_RULES,
    openapi_extra={"requestBody": {"required": True, "content": {}}},
)
async def create_batch(request: Request, gateway: GatewayDep, access: AccessDep, principal: CallerDep) -> JSONResponse:
    settings = gateway.settings
    submitted: BatchSubmitted
    if is_json(request.headers.get("content-type")):
        sources = validated(BatchSources, await json_body(request, max_json_bytes(settings)), strict=True)
        submitted = await submit_sources(
            gateway, access, principal, sources.sources, sources.submission(settings.default_model)
        )
    else:
        form = await request.form(max_files=settings.max_batch_files + 1)
        options = validated(JobOptions, form_fields(form), strict=False)
        files = form.getlist(FILE_FIELD)
        submitted = await submit_uploads(gateway, access, principal, files, options.submission(settings.default_model))
    view = batch_created_view(submitted, principal.namespace)
    return JSONResponse(view, 202, headers={"Location": view["status_url"]})


async def callers_batch(batch_id: str, gateway: GatewayDep, principal: CallerDep) -> list[dict[str, Any]]:
    """The jobs of the caller's batch, or 404: other namespaces' batches are not found, whoever asks."""
    jobs = []
    if is_batch_id(batch_id):
        jobs = await asyncio.to_thread(gateway.jobs.list, principal.namespace, {BATCH_LABEL: batch_id})
    if not jobs:
        raise ApiError(404, f"no batch {batch_id}", param="id", code="batch_not_found")
    return jobs


BatchJobsDep = Annotated[list[dict[str, Any]], Depends(callers_batch)]


@router.get(
    "/{batch_id}",
    response_model=BatchView,
    responses=errors(*CALLER_ERRORS, 404),
    summary="A batch's jobs: counts by phase, progress, and each file's outcome",
)
async def get_batch(batch_id: str, gateway: GatewayDep, principal: CallerDep, jobs: BatchJobsDep) -> dict[str, Any]:
    return batch_view(batch_id, principal.namespace, jobs, gateway.settings.output_bucket)


@router.delete(
    "/{batch_id}",
    status_code=202,
    response_model=BatchCancelled,
    responses=errors(*CALLER_ERRORS, 404),
    summary="Cancel a batch: its jobs not finished are deleted with their audio and transcripts",
)
async def delete_batch(batch_id: str, gateway: GatewayDep, principal: CallerDep, jobs: BatchJobsDep) -> dict[str, Any]:
    waiting = [job for job in jobs if not is_finished(job.get("status"))]
    kept = [job["metadata"]["name"] for job in jobs if is_finished(job.get("status"))]

    async def cancel(job: dict[str, Any]) -> None:
        await asyncio.to_thread(gateway.jobs.delete, principal.namespace, job["metadata"]["name"])

    await in_pool(waiting, cancel)
    return batch_cancelled_view(batch_id, [job["metadata"]["name"] for job in waiting], kept)
