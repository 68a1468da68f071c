"""Uploads streamed to S3 while they are received: the form's `file` part is written to a temporary file (for the
audio check, which needs all of it) and, from there, sent to S3 part by part as it fills. The upload is completed
only when the submission commits it; whatever else happens to the request aborts it. The job's id is chosen here,
when the upload starts, since it names the upload's key."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Coroutine
from contextlib import aclosing
from typing import Any

from fastapi import Request, Response, UploadFile
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, Headers
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import Receive, Scope

from kubescribe.contract import uploaded_source_key
from kubescribe.gateway.access.caller import Access, Principal, caller
from kubescribe.gateway.access.concurrency import ConcurrencyLimit, holding
from kubescribe.gateway.errors import ApiError
from kubescribe.gateway.intake.resource import new_job_id, sanitize_filename
from kubescribe.gateway.state import Gateway
from kubescribe.gateway.stores.objects import PART_SIZE, StreamingUpload

FILE_FIELD = "file"
MULTIPART = "multipart/form-data"


def is_multipart(content_type: str | None) -> bool:
    """Whether a Content-Type header names a multipart form, whatever its parameters and case."""
    return (content_type or "").partition(";")[0].strip().lower() == MULTIPART


class StagedFile(UploadFile):
    """An uploaded file (its name made safe) whose bytes go to `upload`, the S3 key of job `job_id`, as they are
    written."""

    def __init__(
        self, file: Any, *, filename: str | None, headers: Headers, upload: StreamingUpload, job_id: str
    ) -> None:
        super().__init__(file=file, size=0, filename=filename, headers=headers)
        self.upload, self.job_id, self.key = upload, job_id, upload.key
        self._told = 0

    async def write(self, data: bytes) -> None:
        await super().write(data)
        if self.size is not None and self.size - self._told >= PART_SIZE:
            await self.flush()

    async def flush(self, *, finished: bool = False) -> None:
        await run_in_threadpool(self.file.flush)
        self._told = self.size or 0
        self.upload.written(self._told, finished=finished)


def staged_upload(gateway: Gateway, namespace: str, filename: str | None, headers: Headers) -> StagedFile:
    """A new job's file part: a temporary file whose bytes also stream to the job's upload key in the store."""
    job_id, name = new_job_id(), sanitize_filename(filename)
    file = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the form, or once checked
    key = uploaded_source_key(namespace, job_id)
    upload = StreamingUpload(gateway.objects, gateway.settings.upload_bucket, key, file, filename=name)
    return StagedFile(file, filename=name, headers=headers, upload=upload, job_id=job_id)


class StagingParser(MultiPartParser):
    """Starlette's multipart parser, but the first `file` part becomes a StagedFile made by `stage`."""

    def __init__(self, *args: Any, stage: Callable[[str | None, Headers], StagedFile], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stage = stage
        self.staged: StagedFile | None = None

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        part = self._current_part
        if part.file is not None and part.field_name == FILE_FIELD and self.staged is None:
            part.file.file.close()
            self._files_to_close_on_error.pop()
            part.file = self.staged = self.stage(part.file.filename, part.file.headers)
            self._files_to_close_on_error.append(part.file.file)  # type: ignore[arg-type]

    async def parse(self) -> FormData:
        form = await super().parse()
        if self.staged is not None:
            await self.staged.flush(finished=True)
        return form


class StreamingFormRequest(Request):
    """A request whose multipart form streams its file to S3, under the caller's namespace, while it is parsed."""

    def __init__(self, scope: Scope, receive: Receive, *, principal: Principal) -> None:
        super().__init__(scope, receive)
        self.principal = principal
        self.staged: StagedFile | None = None

    async def _get_form(
        self, *, max_files: int | float = 1000, max_fields: int | float = 1000, max_part_size: int = 1024 * 1024
    ) -> FormData:
        if self._form is not None:
            return self._form
        gateway: Gateway = self.app.state.gateway

        def stage(filename: str | None, headers: Headers) -> StagedFile:
            self.staged = staged_upload(gateway, self.principal.namespace, filename, headers)
            return self.staged

        try:
            async with aclosing(self.stream()) as stream:
                parser = StagingParser(
                    self.headers,
                    stream,
                    max_files=max_files,
                    max_fields=max_fields,
                    max_part_size=max_part_size,
                    stage=stage,
                )
                self._form = await parser.parse()
        except MultiPartException as exc:
            raise HTTPException(status_code=400, detail=exc.message) from None
        return self._form

    async def discard(self) -> None:
        if self.staged is not None:
            await asyncio.to_thread(self.staged.upload.discard)


class UploadRoute(APIRoute):
    """Routes taking an uploaded `file`: the caller is decided before the body is read (an unknown caller sends
    nothing to the store), a body that is not a multipart form is refused unread, and so is one more upload than the
    caller may have open; then the file streams to S3 while it is received (see StreamingFormRequest). Routes of the
    same router without a body are left as they are."""

    def open_requests(self, access: Access) -> ConcurrencyLimit:
        """The cap on open requests that one of this route's requests counts against, for as long as it lasts."""
        return access.uploads

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not self.dependant.body_params:
            return handler

        async def streaming_handler(request: Request) -> Response:
            principal = await caller(request)
            if not is_multipart(request.headers.get("content-type")):
                raise ApiError(415, f"the request body must be {MULTIPART} with the audio as its file part")
            with holding(self.open_requests(request.app.state.access), principal.identity):
                streaming = StreamingFormRequest(request.scope, request.receive, principal=principal)
                try:
                    return await handler(streaming)
                finally:
                    await streaming.discard()

        return streaming_handler


class WaitingUploadRoute(UploadRoute):
    """Uploads answered once their transcription is done (/v1/audio/*): each counts as one of the caller's waits,
    from before its body is read until it is answered."""

    def open_requests(self, access: Access) -> ConcurrencyLimit:
        return access.waits
