"""Liveness and readiness. The metrics are served on a port of their own (see `kubescribe.gateway.__main__`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from kubescribe.gateway.errors import error_body
from kubescribe.gateway.routes.deps import GatewayDep
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
    summary="Kubernetes, S3 and the job watch are up",
    response_model=Readiness,
    responses={503: {"model": NotReady, "description": "Not ready: the error names what is down."}},
)
async def readyz(gateway: GatewayDep) -> JSONResponse:
    kubernetes, s3 = await asyncio.gather(
        _check(gateway.jobs.reachable), _check(reachable, gateway.objects, gateway.settings.upload_bucket)
    )
    checks = {"kubernetes": kubernetes, "s3": s3, "watch": gateway.watcher.synced}
    down = [name for name, ok in checks.items() if not ok]
    if down:
        body = {**error_body(503, f"not reachable: {', '.join(down)}", code="not_ready"), "status": "not ready"}
        return JSONResponse({**body, "checks": checks}, 503)
    return JSONResponse({"status": "ready", "checks": checks})
