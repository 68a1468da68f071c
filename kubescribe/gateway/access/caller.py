"""Who is calling, decided once per request: an API key (bound to one namespace) or, when allowed, a Kubernetes
bearer token that may do what the request does to TranscriptionJobs in the namespace it names; then the caller's rate
limit. Failed credentials are rate-limited per client address: once an address is out of them, it gets 429 and no
more token reviews. `Access` also keeps how many uploads, event streams and waits each caller has open."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from fastapi import Request
from kubernetes import client

from kubescribe.gateway.access.concurrency import ConcurrencyLimit
from kubescribe.gateway.access.keys import KeyStore, hash_key
from kubescribe.gateway.access.ratelimit import RateLimiter, retry_after_header
from kubescribe.gateway.access.tokens import TokenReviewer, looks_like_jwt, verb_for
from kubescribe.gateway.errors import ApiError
from kubescribe.gateway.settings import GatewaySettings

NAMESPACE_HEADER = "x-kubescribe-namespace"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Principal:
    namespace: str
    subject: str
    """The key's name or the token's user name, for logs."""
    identity: str
    """A hash of the credential: what the rate limit counts by."""


class Unauthenticated(Exception):
    pass


class BadCredential(Unauthenticated):
    """A credential that is neither a known API key nor a valid token."""


class Forbidden(Exception):
    pass


def credential(headers: Mapping[str, str]) -> str | None:
    """The key or token of `Authorization: Bearer ...` or `X-API-Key: ...`."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("x-api-key", "").strip() or None


def authenticate(headers: Mapping[str, str], keys: KeyStore, tokens: TokenReviewer | None, verb: str) -> Principal:
    """The caller, or Unauthenticated / Forbidden; a token must be allowed to `verb` TranscriptionJobs. Blocking: call
    it in a thread."""
    secret = credential(headers)
    if secret is None:
        raise Unauthenticated("missing API key: send Authorization: Bearer <key> or X-API-Key: <key>")
    record = keys.lookup(secret)
    if record is not None:
        return Principal(record.namespace, record.name, record.hash)
    if tokens is None or not looks_like_jwt(secret):
        raise BadCredential("invalid API key")
    namespace = headers.get(NAMESPACE_HEADER, "default")
    if not _DNS_LABEL.match(namespace):
        raise Forbidden("X-Kubescribe-Namespace is not a namespace name")
    user, allowed = tokens.review(secret, namespace, verb)
    if user is None:
        raise BadCredential("invalid API key or token")
    if not allowed:
        raise Forbidden(f"{user} may not {verb} transcriptionjobs in namespace {namespace}")
    return Principal(namespace, user, hash_key(secret))


def too_many(message: str, wait: float) -> ApiError:
    return ApiError(429, message, code="rate_limit_exceeded", headers={"Retry-After": retry_after_header(wait)})


@dataclass
class Access:
    """What deciding a caller takes: the keys, the token reviewer (None: API keys only), the rate limit per caller
    and the limit of failed credentials per client address; and the caps on each caller's open requests."""

    keys: KeyStore
    tokens: TokenReviewer | None
    limiter: RateLimiter = field(repr=False)
    failures: RateLimiter = field(repr=False)
    uploads: ConcurrencyLimit = field(repr=False)
    event_streams: ConcurrencyLimit = field(repr=False)
    waits: ConcurrencyLimit = field(repr=False)

    @classmethod
    def create(cls, settings: GatewaySettings, api_client: client.ApiClient) -> Access:
        keys = KeyStore.from_secret(
            client.CoreV1Api(api_client),
            settings.keys_secret_namespace,
            settings.keys_secret_name,
            settings.keys_max_stale_seconds,
        )
        tokens = TokenReviewer(api_client) if settings.kubernetes_tokens else None
        return cls(
            keys,
            tokens,
            RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
            RateLimiter(settings.failed_auth_per_second, settings.failed_auth_burst),
            ConcurrencyLimit("uploads", settings.max_uploads_per_caller),
            ConcurrencyLimit("event streams", settings.max_event_streams_per_caller),
            ConcurrencyLimit("transcriptions waited for", settings.max_waits_per_caller),
        )

    async def admit(self, headers: Mapping[str, str], address: str, verb: str) -> Principal:
        """The caller, if known, allowed to `verb` and within its rate limit; otherwise the ApiError to answer. Each
        failed credential from `address` takes one of its tokens; while it has none, only a known API key is
        accepted from it (tokens are not reviewed) and failures answer 429."""
        out_of_failures = self.failures.wait(address, time.monotonic())
        tokens = self.tokens if out_of_failures == 0 else None
        try:
            principal = await asyncio.to_thread(authenticate, headers, self.keys, tokens, verb)
        except Unauthenticated as error:
            if isinstance(error, BadCredential):
                wait = out_of_failures or self.failures.take(address, time.monotonic())
                if wait > 0:
                    raise too_many("too many failed authentications from this address", wait) from None
            raise ApiError(401, str(error), code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}) from None
        except Forbidden as error:
            raise ApiError(403, str(error)) from None
        wait = self.limiter.take(principal.identity, time.monotonic())
        if wait > 0:
            raise too_many("rate limit exceeded", wait)
        return principal


async def caller(request: Request) -> Principal:
    """The request's caller, decided on first use (before an upload's body is read) and remembered for the rest."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        access: Access = request.app.state.access
        address = request.client.host if request.client else ""
        verb = verb_for(request.method, request.url.path)
        principal = request.state.principal = await access.admit(request.headers, address, verb)
    return principal
