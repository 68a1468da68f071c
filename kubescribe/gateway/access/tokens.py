"""Kubernetes bearer tokens: TokenReview says who the caller is, SubjectAccessReview whether they may do what the
request does to TranscriptionJobs (create, get, list, watch or delete) in the namespace they name. Answers are cached
for a minute."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from kubernetes import client

from kubescribe.api.v1alpha1 import GROUP, PLURAL
from kubescribe.gateway.access.keys import hash_key

_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
TOKEN_CACHE_SECONDS = 60
TOKEN_CACHE_SIZE = 1024


def looks_like_jwt(token: str) -> bool:
    return bool(_JWT.match(token))


def verb_for(method: str, path: str) -> str:
    """The verb on TranscriptionJobs a request needs: GET /v1/jobs lists, GET /v1/jobs/{id}/events watches, any other
    GET under /v1/jobs/{id} gets, DELETE deletes; a batch's view lists its jobs; uploads, batches and /v1/models (what
    one submits with) create."""
    parts = path.strip("/").split("/")
    if parts[:2] not in (["v1", "jobs"], ["v1", "batches"]):
        return "create"
    if method == "DELETE":
        return "delete"
    if method not in ("GET", "HEAD"):
        return "create"
    if len(parts) == 2 or parts[1] == "batches":
        return "list"
    return "watch" if parts[3:] == ["events"] else "get"


class TokenReviewer:
    def __init__(self, api_client: client.ApiClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._authn = client.AuthenticationV1Api(api_client)
        self._authz = client.AuthorizationV1Api(api_client)
        self._clock = clock
        self._cache: dict[tuple[str, str, str], tuple[float, str | None, bool]] = {}

    def review(self, token: str, namespace: str, verb: str) -> tuple[str | None, bool]:
        """(user name or None if the token is not valid, whether it may `verb` TranscriptionJobs in `namespace`)."""
        cache_key, now = (hash_key(token), namespace, verb), self._clock()
        cached = self._cache.get(cache_key)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        user, allowed = self._ask(token, namespace, verb)
        if len(self._cache) >= TOKEN_CACHE_SIZE:
            self._cache.clear()
        self._cache[cache_key] = (now + TOKEN_CACHE_SECONDS, user, allowed)
        return user, allowed

    def _ask(self, token: str, namespace: str, verb: str) -> tuple[str | None, bool]:
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
                        "verb": verb,
                        "namespace": namespace,
                    },
                }
            }
        )
        return user.username, bool(access.status and access.status.allowed)
