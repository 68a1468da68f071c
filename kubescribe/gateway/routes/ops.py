"""Liveness and readiness. The metrics are served on a port of their own (see `kubescribe.gateway.__main__`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from kubescribe.gateway.errors import error_body
from kubescribe.gateway.routes.deps import AccessDep, GatewayDep
from kubescribe.gateway.routes.schemas import NotReady, Readiness
from kubescribe.gateway.stores.objects import reachable

router = APIRouter(tags=["operations"])
CHECK_SECONDS = 5


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check(function: Callable[..., bool], *args: object) -> bool:
    try:
        return await asyncio.wait_for(asyncio.to_thread(function, *args), CHECK_SECONDS)
    except TimeoutError:
        return False


@router.get(
    "/readyz",
    summary="Kubernetes and S3 are up, the job watch and the API keys are fresh",
    response_model=Readiness,
    responses={503: {"model": NotReady, "description": "Not ready: the error names what is down, and why."}},
)
async def readyz(gateway: GatewayDep, access: AccessDep) -> JSONResponse:
    kubernetes, s3 = await asyncio.gather(
        _check(gateway.jobs.reachable), _check(reachable, gateway.objects, gateway.settings.upload_bucket)
    )
    reasons = {
        "kubernetes": None if kubernetes else "the Kubernetes API server is not reachable",
        "s3": None if s3 else "the object store is not reachable",
        "watch": gateway.watcher.staleness(),
        "keys": access.keys.staleness(),
    }
    checks = {name: reason is None for name, reason in reasons.items()}
    down = [reason for reason in reasons.values() if reason is not None]
    if down:
        body = {**error_body(503, "; ".join(down), code="not_ready"), "status": "not ready"}
        return JSONResponse({**body, "checks": checks}, 503)
    return JSONResponse({"status": "ready", "checks": checks})
