"""/v1/jobs: submit audio, follow and list jobs, download transcripts, cancel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Header, Query, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse

from kubescribe.api.v1alpha1 import (
    BEAM_SIZE_MAX,
    HTTP_URL,
    LANGUAGE,
    LOCAL_QUEUE,
    MAX_SPEAKERS,
    PROMPT_MAX_LENGTH,
    URL_MAX_LENGTH,
    Format,
    Phase,
    Task,
    is_finished,
    phase_of,
)
from kubescribe.gateway import metrics
from kubescribe.gateway.errors import ApiError
from kubescribe.gateway.intake.submission import FORMATS, submit
from kubescribe.gateway.intake.upload import UploadRoute
from kubescribe.gateway.routes.deps import CallerDep, EventStreamDep, GatewayDep, JobDep
from kubescribe.gateway.routes.schemas import (
    BEAM_SIZE,
    CALLER_ERRORS,
    DIARIZE,
    HOTWORDS,
    PROMPT,
    QUEUE,
    SPEAKERS,
    TEMPERATURE,
    JobList,
    JobOptions,
    JobView,
    errors,
    or_empty,
)
from kubescribe.gateway.routes.views import (
    PAGE_TOKEN,
    decode_page_token,
    job_view,
    page,
    status_url,
    transcript_filename,
    transcript_uri,
)
from kubescribe.gateway.state import Gateway
from kubescribe.gateway.stores.objects import chunks, open_object

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=UploadRoute)

CONTENT_TYPES = {
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
}
KEEPALIVE_SECONDS = 15


@router.post(
    "",
    status_code=202,
    response_model=JobView,
    responses=errors(*CALLER_ERRORS, 400, 413, 415),
    summary="Upload audio and submit a transcription job",
    description="The file must decode as audio (at least 0.1 s of it), else 415, and fit the gateway's upload "
    "limit, else 413: rules of the file's content that its schema cannot state.",
)
async def create_job(
    *,
    gateway: GatewayDep,
    principal: CallerDep,
    file: Annotated[UploadFile, File(description="The audio: any format ffmpeg decodes.")],
    model: Annotated[str, Form(description="A model this gateway offers; its default when empty.")] = "",
    language: Annotated[
        str, Form(pattern=or_empty(LANGUAGE), description="ISO 639-1 code such as en; detected when empty.")
    ] = "",
    task: Annotated[Task, Form(description="translate needs a multilingual model (not *.en).")] = "transcribe",
    formats: Annotated[
        str, Form(pattern=FORMATS, description="Comma-separated: json, txt, srt, vtt, tsv.")
    ] = "json,txt,srt,vtt",
    vad: Annotated[bool, Form(description="Skip silence with voice activity detection.")] = True,
    word_timestamps: Annotated[bool, Form(description="Add each word's time to the json output.")] = False,
    prompt: Annotated[str, Form(max_length=PROMPT_MAX_LENGTH, description=PROMPT)] = "",
    hotwords: Annotated[str, Form(max_length=PROMPT_MAX_LENGTH, description=HOTWORDS)] = "",
    beam_size: Annotated[int, Form(ge=1, le=BEAM_SIZE_MAX, description=BEAM_SIZE)] = 5,
    temperature: Annotated[float, Form(ge=0, le=1, description=TEMPERATURE)] = 0.0,
    diarize: Annotated[bool, Form(description=DIARIZE)] = False,
    speakers: Annotated[int, Form(ge=0, le=MAX_SPEAKERS, description=SPEAKERS)] = 0,
    queue: Annotated[str, Form(pattern=or_empty(LOCAL_QUEUE), description=QUEUE)] = "",
    webhook_url: Annotated[
        str,
        Form(
            pattern=or_empty(HTTP_URL),
            max_length=URL_MAX_LENGTH,
            description="An http(s) URL POSTed the status at the end; none when empty.",
        ),
    ] = "",
) -> JSONResponse:
    options = JobOptions(
        model=model,
        language=language,
        task=task,
        formats=formats,
        vad=vad,
        word_timestamps=word_timestamps,
        prompt=prompt,
        hotwords=hotwords,
        beam_size=beam_size,
        temperature=temperature,
        diarize=diarize,
        speakers=speakers,
        queue=queue,
        webhook_url=webhook_url,
    )
    created = await submit(gateway, principal, file, options.submission(gateway.settings.default_model))
    view = job_view(created)
    return JSONResponse(view, 202, headers={"Location": view["status_url"]})


@router.get("", response_model=JobList, responses=errors(*CALLER_ERRORS, 400), summary="List jobs, newest first")
async def list_jobs(
    gateway: GatewayDep,
    principal: CallerDep,
    phase: Annotated[Phase | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    page_token: Annotated[
        str | None, Query(pattern=PAGE_TOKEN, description="next_page_token of the previous page.")
    ] = None,
) -> dict[str, Any]:
    after = None if page_token is None else decode_page_token(page_token)
    jobs = await asyncio.to_thread(gateway.jobs.list, principal.namespace)
    chosen, next_token = page([job for job in jobs if phase in (None, phase_of(job.get("status")))], limit, after)
    return {"jobs": [job_view(job) for job in chosen], "next_page_token": next_token}


@router.get("/{job_id}", response_model=JobView, responses=errors(*CALLER_ERRORS, 404), summary="A job's state")
async def get_job(job: JobDep) -> dict[str, Any]:
    return job_view(job)


@router.delete(
    "/{job_id}",
    status_code=202,
    response_model=JobView,
    responses=errors(*CALLER_ERRORS, 404),
    summary="Cancel a job and delete it with its audio and transcripts",
)
async def delete_job(gateway: GatewayDep, job: JobDep) -> dict[str, Any]:
    await asyncio.to_thread(gateway.jobs.delete, job["metadata"]["namespace"], job["metadata"]["name"])
    return job_view(job)


@router.get(
    "/{job_id}/transcript",
    responses={
        200: {"content": {media: {} for media in CONTENT_TYPES.values()}, "description": "The transcript file."},
        **errors(*CALLER_ERRORS, 400, 404, 409),
    },
    summary="Download a transcript",
)
async def transcript(
    gateway: GatewayDep, job: JobDep, format: Annotated[Format, Query()] = "json"
) -> StreamingResponse:
    job_id, status = job["metadata"]["name"], job.get("status")
    if not is_finished(status):
        raise ApiError(409, f"job {job_id} is {phase_of(status)}: no transcript yet", code="job_not_finished")
    uri = transcript_uri(job, format, gateway.settings.output_bucket)
    if uri is None:
        raise ApiError(404, f"job {job_id} has no {format} transcript", param="format", code="transcript_not_found")
    response = await asyncio.to_thread(open_object, gateway.objects, uri)
    filename = transcript_filename(job, format)
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
    return StreamingResponse(
        chunks(response), media_type=CONTENT_TYPES[format], headers={"Content-Disposition": disposition}
    )


def sse(event: str, data: object, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n"


@router.get(
    "/{job_id}/events",
    dependencies=[EventStreamDep],
    responses={200: {"content": {"text/event-stream": {}}}, **errors(*CALLER_ERRORS, 404)},
    summary="Server-Sent Events: the job's state whenever it changes, then `end`",
)
async def events(
    gateway: GatewayDep,
    job: JobDep,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="The id of the last event a reconnecting client received: that state is not sent again.",
        ),
    ] = None,
) -> StreamingResponse:
    return StreamingResponse(
        follow(gateway, job["metadata"]["namespace"], job["metadata"]["name"], last_event_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def follow(gateway: Gateway, namespace: str, job_id: str, last_event_id: str | None = None) -> AsyncIterator[str]:
    """The job's state whenever its phase or progress changes, each event's id the job's resourceVersion, then
    `end`. A client reconnecting with Last-Event-ID is not sent again the state it already has."""
    metrics.event_streams.inc()
    try:
        with gateway.watcher.follow(namespace, job_id) as changes:
            job = await asyncio.to_thread(gateway.jobs.get, namespace, job_id)
            last: dict[str, Any] | None = None
            while job is not None:
                view = job_view(job)
                version = job["metadata"].get("resourceVersion")
                if last is None:
                    if version != last_event_id:
                        yield sse("status", view, version)
                elif (view["phase"], view["progress"]) != (last["phase"], last["progress"]):
                    yield sse("status", view, version)
                last = view
                if is_finished(job.get("status")):
                    break
                try:
                    job = await asyncio.wait_for(changes.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
            yield sse("end", last or {"id": job_id, "status_url": status_url(job_id)})
    finally:
        metrics.event_streams.dec()
