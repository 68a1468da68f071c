"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kubescribe.gateway.deps import GatewayDep

router = APIRouter(tags=["operations"])
CHECK_SECONDS = 5


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check(function: object) -> bool:
    assert callable(function)
    try:
        return bool(await asyncio.wait_for(asyncio.to_thread(function), CHECK_SECONDS))
    except TimeoutError:
        return False


@router.get("/readyz", summary="Kubernetes, S3 and the job watch are up", responses={503: {"description": "Not ready"}})
async def readyz(gateway: GatewayDep) -> JSONResponse:
    kubernetes, s3 = await asyncio.gather(_check(gateway.kubernetes_reachable), _check(gateway.s3_reachable))
    checks = {"kubernetes": kubernetes, "s3": s3, "watch": gateway.watcher.synced}
    down = [name for name, ok in checks.items() if not ok]
    body = {"status": "not ready" if down else "ready", "checks": checks}
    if down:
        body["message"] = f"not reachable: {', '.join(down)}"
    return JSONResponse(body, 503 if down else 200)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
