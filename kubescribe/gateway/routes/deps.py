"""What route functions are given: the gateway's shared state, the caller (decided once per request), the caller's
job named in the path, and one of the caller's event streams held while a stream is open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request

from kubescribe.gateway.access.caller import Access, Principal, caller
from kubescribe.gateway.access.concurrency import holding
from kubescribe.gateway.errors import ApiError
from kubescribe.gateway.intake.resource import is_job_id
from kubescribe.gateway.state import Gateway


def gateway(request: Request) -> Gateway:
    state: Gateway = request.app.state.gateway
    return state


def access(request: Request) -> Access:
    state: Access = request.app.state.access
    return state


GatewayDep = Annotated[Gateway, Depends(gateway)]
AccessDep = Annotated[Access, Depends(access)]
CallerDep = Annotated[Principal, Depends(caller)]


async def callers_job(job_id: str, gateway: GatewayDep, principal: CallerDep) -> dict[str, Any]:
    """The caller's job, or 404: other namespaces' jobs are not found, whoever asks."""
    job = await asyncio.to_thread(gateway.jobs.get, principal.namespace, job_id) if is_job_id(job_id) else None
    if job is None:
        raise ApiError(404, f"no job {job_id}", param="id", code="job_not_found")
    return job


JobDep = Annotated[dict[str, Any], Depends(callers_job)]


async def event_stream(request: Request, principal: CallerDep) -> AsyncIterator[None]:
    """One of the caller's event streams, held until the response has been sent (or the client went away)."""
    access: Access = request.app.state.access
    with holding(access.event_streams, principal.identity):
        yield


EventStreamDep = Depends(event_stream)
