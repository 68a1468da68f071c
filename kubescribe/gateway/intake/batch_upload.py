"""A batch's uploads: every `file` part of the form streams to S3 while it is received, as upload.py streams one,
and each is checked as soon as it has all its bytes (not empty, within the upload limit, audio) and its temporary
file closed, so that a batch holds at most one file on disk and none in memory. Each file's job id is chosen when its
part starts; a part past the batch's limits is refused before any of it is read. The uploads are completed only when
their jobs are created; whatever else happens to the request aborts them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import aclosing
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import FormData, Headers
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import Receive, Scope

from kubescribe.gateway.access.caller import Access, Principal, caller
from kubescribe.gateway.access.concurrency import holding
from kubescribe.gateway.errors import ApiError
from kubescribe.gateway.intake.audio import NotAudio, check_audio
from kubescribe.gateway.intake.submission import check_queue
from kubescribe.gateway.intake.upload import FILE_FIELD, MULTIPART, StagedFile, is_multipart, staged_upload
from kubescribe.gateway.state import Gateway

JSON = "application/json"


class BatchParser(MultiPartParser):
    """Starlette's multipart parser, but every `file` part becomes a StagedFile made by `stage`, refused once it has
    more than `max_file_bytes`, and `finish` is awaited with each once it has all its bytes, before the body is read
    further."""

    def __init__(
        self,
        headers: Headers,
        stream: AsyncGenerator[bytes, None],
        *,
        stage: Callable[[str | None, Headers], StagedFile],
        finish: Callable[[StagedFile], Awaitable[None]],
        max_file_bytes: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(headers, self._finishing(stream), **kwargs)
        self.stage, self.finish, self.max_file_bytes = stage, finish, max_file_bytes
        self.staged: list[StagedFile] = []
        self._ended: list[StagedFile] = []

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        part = self._current_part
        if part.file is not None and part.field_name == FILE_FIELD:
            part.file.file.close()
            self._files_to_close_on_error.pop()
            part.file = self.stage(part.file.filename, part.file.headers)
            self.staged.append(part.file)
            self._files_to_close_on_error.append(part.file.file)  # type: ignore[arg-type]

    def on_part_end(self) -> None:
        super().on_part_end()
        if isinstance(self._current_part.file, StagedFile):
            self._ended.append(self._current_part.file)

    async def _finishing(self, stream: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
        """The body, chunk by chunk; between chunks (each written to its file by then), the files that ended are
        finished and the one being received is held to the limit."""
        async for chunk in stream:
            yield chunk
            await self.finish_ended()
            current = self.staged[-1] if self.staged else None
            if current is not None and (current.size or 0) > self.max_file_bytes:
                raise ApiError(
                    413, f"{current.filename}: the file is larger than {self.max_file_bytes} bytes", param="file"
                )

    async def finish_ended(self) -> None:
        ended, self._ended = self._ended, []
        for file in ended:
            await self.finish(file)


class BatchFormRequest(Request):
    """A request whose multipart form streams each of its files to S3, under the caller's namespace, while it is
    parsed, within the batch's limits: `max_batch_files`, and the namespace's room for waiting jobs."""

    def __init__(self, scope: Scope, receive: Receive, *, principal: Principal) -> None:
        super().__init__(scope, receive)
        self.principal = principal
        self.staged: list[StagedFile] = []

    async def _get_form(
        self, *, max_files: int | float = 1000, max_fields: int | float = 1000, max_part_size: int = 1024 * 1024
    ) -> FormData:
        if self._form is not None:
            return self._form
        gateway: Gateway = self.app.state.gateway
        settings, namespace = gateway.settings, self.principal.namespace

        def stage(filename: str | None, headers: Headers) -> StagedFile:
            count = len(self.staged) + 1
            if count > settings.max_batch_files:
                raise ApiError(
                    400,
                    f"a batch has at most {settings.max_batch_files} files",
                    param="file",
                    code="too_many_files",
                )
            check_queue(gateway, namespace, count)
            self.staged.append(staged_upload(gateway, namespace, filename, headers))
            return self.staged[-1]

        try:
            async with aclosing(self.stream()) as stream:
                parser = BatchParser(
                    self.headers,
                    stream,
                    max_files=max_files,
                    max_fields=max_fields,
                    max_part_size=max_part_size,
                    stage=stage,
                    finish=finish_upload,
                    max_file_bytes=settings.max_upload_bytes,
                )
                self._form = await parser.parse()
                await parser.finish_ended()
        except MultiPartException as exc:
            raise HTTPException(status_code=400, detail=exc.message) from None
        return self._form

    async def discard(self) -> None:
        """Aborts every upload not completed."""
        for staged in self.staged:
            await asyncio.to_thread(staged.upload.discard)


async def finish_upload(file: StagedFile) -> None:
    """Sends the file's last part and checks it is audio (415 naming it otherwise); then its temporary file goes."""
    await file.flush(finished=True)
    if not file.size:
        raise ApiError(415, f"{file.filename}: the file is empty", param="file", code="unsupported_audio")
    try:
        await asyncio.to_thread(check_audio, file.file)
    except NotAudio as error:
        raise ApiError(415, f"{file.filename}: {error}", param="file", code="unsupported_audio") from None
    await asyncio.to_thread(file.file.close)


def is_json(content_type: str | None) -> bool:
    return (content_type or "").partition(";")[0].strip().lower() == JSON


class BatchRoute(APIRoute):
    """POST /v1/batches: the caller is decided before the body is read; a multipart form then streams its files to
    S3 (see BatchFormRequest), as one of the caller's open uploads; a JSON body is left to the route; any other body
    is refused unread. The batch's other routes are left as they are."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if "POST" not in (self.methods or ()):
            return handler

        async def batch_handler(request: Request) -> Response:
            principal = await caller(request)
            content_type = request.headers.get("content-type")
            if is_json(content_type):
                return await handler(request)
            if not is_multipart(content_type):
                raise ApiError(415, f"the request body must be {MULTIPART} with audio files, or {JSON} with sources")
            access: Access = request.app.state.access
            with holding(access.uploads, principal.identity):
                streaming = BatchFormRequest(request.scope, request.receive, principal=principal)
                try:
                    return await handler(streaming)
                finally:
                    await streaming.discard()

        return batch_handler
