"""Who is calling: an API key (bound to one namespace) or, optionally, a Kubernetes bearer token that may create
TranscriptionJobs in the namespace it names."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kubernetes import client

from kubescribe.api.v1alpha1 import GROUP, PLURAL
from kubescribe.gateway.keys import KeyStore, hash_key

NAMESPACE_HEADER = "x-kubescribe-namespace"
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
TOKEN_CACHE_SECONDS = 60
TOKEN_CACHE_SIZE = 1024


@dataclass(frozen=True)
class Principal:
    namespace: str
    subject: str
    """The key's name or the token's user name, for logs."""
    identity: str
    """A hash of the credential: what the rate limit counts by."""


class Unauthenticated(Exception):
    pass


class Forbidden(Exception):
    pass


def credential(headers: Mapping[str, str]) -> str | None:
    """The key or token of `Authorization: Bearer ...` or `X-API-Key: ...`."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("x-api-key", "").strip() or None


def looks_like_jwt(token: str) -> bool:
    return bool(_JWT.match(token))


class TokenReviewer:
    """TokenReview, then SubjectAccessReview for creating TranscriptionJobs in the namespace; answers are cached."""

    def __init__(self, api_client: client.ApiClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._authn = client.AuthenticationV1Api(api_client)
        self._authz = client.AuthorizationV1Api(api_client)
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, str | None, bool]] = {}

    def review(self, token: str, namespace: str) -> tuple[str | None, bool]:
        """(user name or None if the token is not valid, whether it may create jobs in `namespace`)."""
        cache_key, now = (hash_key(token), namespace), self._clock()
        cached = self._cache.get(cache_key)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        user, allowed = self._ask(token, namespace)
        if len(self._cache) >= TOKEN_CACHE_SIZE:
            self._cache.clear()
        self._cache[cache_key] = (now + TOKEN_CACHE_SECONDS, user, allowed)
        return user, allowed

    def _ask(self, token: str, namespace: str) -> tuple[str | None, bool]:
        review = self._authn.create_token_review({"spec": {"token": token}})
        if not review.status or not review.status.authenticated:
            return None, False
        user = review.status.user
        access = self._authz.create_subject_access_review(
            {
                "spec": {
                    "user": user.username,
                    "groups": user.groups or [],
                    "uid": user.uid,
                    "extra": user.extra or {},
                    "resourceAttributes": {
                        "group": GROUP,
                        "resource": PLURAL,
                        "verb": "create",
                        "namespace": namespace,
                    },
                }
            }
        )
        return user.username, bool(access.status and access.status.allowed)


def authenticate(headers: Mapping[str, str], keys: KeyStore, tokens: TokenReviewer | None) -> Principal:
    """The caller, or Unauthenticated / Forbidden. Blocking: call it in a thread."""
    secret = credential(headers)
    if secret is None:
        raise Unauthenticated("missing API key: send Authorization: Bearer <key> or X-API-Key: <key>")
    record = keys.lookup(secret)
    if record is not None:
        return Principal(record.namespace, record.name, record.hash)
    if tokens is None or not looks_like_jwt(secret):
        raise Unauthenticated("invalid API key")
    namespace = headers.get(NAMESPACE_HEADER, "default")
    if not _DNS_LABEL.match(namespace):
        raise Forbidden("X-Kubescribe-Namespace is not a namespace name")
    user, allowed = tokens.review(secret, namespace)
    if user is None:
        raise Unauthenticated("invalid API key or token")
    if not allowed:
        raise Forbidden(f"{user} may not create transcriptionjobs in namespace {namespace}")
    return Principal(namespace, user, hash_key(secret))
