"""Uploads streamed to S3 while they are received: the form's `file` part is written to a temporary file (for the
audio check, which needs all of it) and, from there, sent to S3 part by part as it fills. The upload is completed
only when the submission commits it; whatever else happens to the request aborts it."""

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

from kubescribe.gateway.auth import Forbidden, Unauthenticated, authenticate
from kubescribe.gateway.jobs import new_job_id, sanitize_filename, upload_key
from kubescribe.gateway.service import Gateway
from kubescribe.gateway.storage import PART_SIZE, StreamingUpload

FILE_FIELD = "file"


class StagedFile(UploadFile):
    """An uploaded file whose bytes go to `upload` (to the S3 key of job `job_id`) as they are written."""

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


class StagingRequest(Request):
    """A request whose multipart form, from an authenticated caller, streams its file to S3 while it is parsed."""

    staged: StagedFile | None = None

    async def _get_form(
        self, *, max_files: int | float = 1000, max_fields: int | float = 1000, max_part_size: int = 1024 * 1024
    ) -> FormData:
        media_type = self.headers.get("content-type", "").partition(";")[0].strip().lower()
        if self._form is not None or media_type != "multipart/form-data":
            return await super()._get_form(max_files=max_files, max_fields=max_fields, max_part_size=max_part_size)
        gateway: Gateway = self.app.state.gateway
        try:
            principal = await asyncio.to_thread(authenticate, self.headers, gateway.keys, gateway.tokens)
        except (Unauthenticated, Forbidden):  # answered by the principal dependency, once the form is read
            return await super()._get_form(max_files=max_files, max_fields=max_fields, max_part_size=max_part_size)

        def stage(filename: str | None, headers: Headers) -> StagedFile:
            job_id = new_job_id()
            file = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the form
            upload = StreamingUpload(
                gateway.store,
                gateway.settings.upload_bucket,
                upload_key(principal.namespace, job_id),
                file,
                filename=sanitize_filename(filename),
            )
            self.staged = StagedFile(file, filename=filename, headers=headers, upload=upload, job_id=job_id)
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
    """Routes taking an uploaded `file`: it streams to S3 while it is received (see StagingRequest)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def staging_handler(request: Request) -> Response:
            staging = StagingRequest(request.scope, request.receive)
            try:
                return await handler(staging)
            finally:
                await staging.discard()

        return staging_handler
