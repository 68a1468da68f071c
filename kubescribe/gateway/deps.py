"""FastAPI dependencies: the gateway's shared state and the authenticated, rate-limited caller."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request

from kubescribe.gateway.auth import Forbidden, Principal, Unauthenticated, authenticate
from kubescribe.gateway.errors import ApiError
from kubescribe.gateway.ratelimit import retry_after_header
from kubescribe.gateway.service import Gateway


def gateway(request: Request) -> Gateway:
    state: Gateway = request.app.state.gateway
    return state


async def principal(request: Request, gateway: Annotated[Gateway, Depends(gateway)]) -> Principal:
    try:
        caller = await asyncio.to_thread(authenticate, request.headers, gateway.keys, gateway.tokens)
    except Unauthenticated as error:
        raise ApiError(401, str(error), code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}) from None
    except Forbidden as error:
        raise ApiError(403, str(error)) from None
    wait = gateway.rate_limit(caller.identity)
    if wait > 0:
        raise ApiError(
            429, "rate limit exceeded", code="rate_limit_exceeded", headers={"Retry-After": retry_after_header(wait)}
        )
    return caller


GatewayDep = Annotated[Gateway, Depends(gateway)]
PrincipalDep = Annotated[Principal, Depends(principal)]
