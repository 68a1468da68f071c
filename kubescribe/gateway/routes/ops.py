"""Liveness and readiness. The metrics are served on a port of their own (see `kubescribe.gateway.__main__`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from kubescribe.gateway.routes.deps import GatewayDep
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


@router.get("/readyz", summary="Kubernetes, S3 and the job watch are up", responses={503: {"description": "Not ready"}})
async def readyz(gateway: GatewayDep) -> JSONResponse:
    kubernetes, s3 = await asyncio.gather(
        _check(gateway.jobs.reachable), _check(reachable, gateway.objects, gateway.settings.upload_bucket)
    )
    checks = {"kubernetes": kubernetes, "s3": s3, "watch": gateway.watcher.synced}
    down = [name for name, ok in checks.items() if not ok]
    body = {"status": "not ready" if down else "ready", "checks": checks}
    if down:
        body["message"] = f"not reachable: {', '.join(down)}"
    return JSONResponse(body, 503 if down else 200)
