"""Who may call: API keys, credentials, token reviews' inputs, rate limits."""

from __future__ import annotations

import asyncio
import base64
import json
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client

from kubescribe.gateway.access.caller import Access, Forbidden, Unauthenticated, authenticate, credential
from kubescribe.gateway.access.concurrency import ConcurrencyLimit, holding
from kubescribe.gateway.access.keys import KeyRecord, KeyStore, hash_key, new_key, parse_records
from kubescribe.gateway.access.ratelimit import RateLimiter, TokenBucket, retry_after_header
from kubescribe.gateway.access.tokens import TokenReviewer, looks_like_jwt, verb_for
from kubescribe.gateway.errors import RETRY_AFTER_SECONDS, ApiError, Unavailable


def encoded(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def test_keys_are_random_and_stored_as_hashes() -> None:
    key = new_key()
    assert key.startswith("ks_") and len(key) > 40 and key != new_key()
    records = parse_records(
        {hash_key(key): encoded({"namespace": "a", "name": "alice", "created": "now"}), "bad": "!!", "x": encoded([])}
    )
    assert records == {hash_key(key): KeyRecord(hash_key(key), "a", "alice", "now")}


def loaded(store: KeyStore) -> KeyStore:
    store.refresh()
    return store


def test_the_key_store_serves_the_last_keys_read_for_a_bounded_time_when_the_secret_cannot_be_read() -> None:
    now, secret_readable = [0.0], [True]
    alice, bob = KeyRecord(hash_key("k"), "a", "alice", "t"), KeyRecord(hash_key("b"), "a", "bob", "t")
    records = {alice.hash: alice}

    def load() -> dict[str, KeyRecord]:
        if not secret_readable[0]:
            raise ConnectionRefusedError("the API server refuses connections")
        return dict(records)

    store = KeyStore(load, 300, clock=lambda: now[0])
    with pytest.raises(Unavailable):
        store.lookup("k")  # nothing read yet
    assert store.staleness() == "the API keys have not been read yet"

    store.refresh()
    records[bob.hash] = bob
    assert (store.lookup("k"), store.lookup("b")) == (alice, None)  # a lookup does not read the Secret
    now[0] = 10
    store.refresh()
    assert store.lookup("b") == bob

    secret_readable[0] = False
    now[0] = 200
    store.refresh()
    assert store.lookup("k") == alice
    assert store.staleness() is None
    now[0] = 310
    store.refresh()
    assert store.lookup("k") == alice  # read at 10: 300 s ago
    now[0] = 311
    store.refresh()
    assert store.staleness() == "the API keys were last read 301 s ago (more than 300 s)"
    with pytest.raises(Unavailable) as refused:
        store.lookup("k")
    assert refused.value.status_code == 503
    assert refused.value.headers == {"Retry-After": str(RETRY_AFTER_SECONDS)}

    secret_readable[0] = True
    store.refresh()
    assert store.lookup("k") == alice


def test_credentials_come_from_either_header() -> None:
    assert credential({"authorization": "Bearer abc"}) == "abc"
    assert credential({"authorization": "bearer  abc "}) == "abc"
    assert credential({"x-api-key": "abc"}) == "abc"
    assert credential({"authorization": "Basic abc"}) is None
    assert credential({}) is None
    assert looks_like_jwt("eyJhbGciOi.eyJpc3Mi.c2lnbmF0dXJl")
    assert not looks_like_jwt("ks_abc")


def test_authentication_by_key_and_refusal() -> None:
    record = KeyRecord(hash_key("ks_good"), "team-a", "alice", "t")
    store = loaded(KeyStore(lambda: {record.hash: record}, 60))
    principal = authenticate({"x-api-key": "ks_good"}, store, None, "create")
    assert (principal.namespace, principal.subject, principal.identity) == ("team-a", "alice", record.hash)
    for headers in ({}, {"x-api-key": "ks_bad"}, {"authorization": "Bearer a.b.c"}):
        with pytest.raises(Unauthenticated):
            authenticate(headers, store, None, "create")


def test_the_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3, tokens=3, updated=0)
    assert [bucket.take(0) for _ in range(3)] == [0, 0, 0]
    assert bucket.take(0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0
    limiter = RateLimiter(1, 1)
    assert (limiter.take("a", 0), limiter.take("b", 0)) == (0, 0)
    assert limiter.take("a", 0) > 0
    assert retry_after_header(0.2) == "1"
    assert retry_after_header(2.1) == "3"


def test_a_token_needs_the_verb_of_what_the_request_does() -> None:
    assert verb_for("POST", "/v1/jobs") == "create"
    assert verb_for("GET", "/v1/jobs") == "list"
    assert verb_for("GET", "/v1/jobs/") == "list"
    assert verb_for("GET", "/v1/jobs/tj-abc") == "get"
    assert verb_for("HEAD", "/v1/jobs/tj-abc") == "get"
    assert verb_for("GET", "/v1/jobs/tj-abc/transcript") == "get"
    assert verb_for("GET", "/v1/jobs/tj-abc/events") == "watch"
    assert verb_for("DELETE", "/v1/jobs/tj-abc") == "delete"
    assert verb_for("POST", "/v1/audio/transcriptions") == "create"
    assert verb_for("POST", "/v1/audio/translations") == "create"
    assert verb_for("GET", "/v1/models") == "create"


class FakeReviews:
    """TokenReview and SubjectAccessReview answers: one user, allowed only the verbs given."""

    def __init__(self, allowed: set[str]) -> None:
        self.allowed, self.asked, self.tokens_reviewed = allowed, list[tuple[str, str]](), 0

    def create_token_review(self, body: dict[str, Any]) -> Any:
        self.tokens_reviewed += 1
        user = SimpleNamespace(username="system:serviceaccount:ns:reader", groups=[], uid="u", extra=None)
        return SimpleNamespace(status=SimpleNamespace(authenticated=body["spec"]["token"] == "a.b.c", user=user))

    def create_subject_access_review(self, body: dict[str, Any]) -> Any:
        attributes = body["spec"]["resourceAttributes"]
        self.asked.append((attributes["verb"], attributes["namespace"]))
        return SimpleNamespace(status=SimpleNamespace(allowed=attributes["verb"] in self.allowed))


def fake_reviewer(reviews: FakeReviews) -> TokenReviewer:
    reviewer = TokenReviewer(client.ApiClient(), clock=lambda: 0.0)
    reviewer._authn = reviewer._authz = reviews  # type: ignore[assignment]
    return reviewer


def test_token_reviews_ask_for_the_verb_and_are_cached_by_it() -> None:
    reviews = FakeReviews({"get", "list"})
    reviewer = fake_reviewer(reviews)
    user = "system:serviceaccount:ns:reader"
    assert reviewer.review("a.b.c", "ns", "list") == (user, True)
    assert reviewer.review("a.b.c", "ns", "create") == (user, False)
    assert reviewer.review("a.b.c", "ns", "list") == (user, True)
    assert reviewer.review("a.b.c", "other", "list") == (user, True)
    assert reviews.asked == [("list", "ns"), ("create", "ns"), ("list", "other")]
    assert reviewer.review("x.y.z", "ns", "list") == (None, False)
    store = loaded(KeyStore(dict, 60))
    reader = authenticate({"authorization": "Bearer a.b.c", "x-kubescribe-namespace": "ns"}, store, reviewer, "get")
    assert (reader.namespace, reader.subject) == ("ns", user)
    with pytest.raises(Forbidden, match="may not delete transcriptionjobs in namespace ns"):
        authenticate({"authorization": "Bearer a.b.c", "x-kubescribe-namespace": "ns"}, store, reviewer, "delete")


def test_failed_credentials_are_limited_per_address_before_any_token_review() -> None:
    record = KeyRecord(hash_key("ks_good"), "ns", "alice", "t")
    reviews = FakeReviews({"list"})
    keys = loaded(KeyStore(lambda: {record.hash: record}, 60))
    caps = (ConcurrencyLimit(what, 1) for what in ("uploads", "event streams", "waits"))
    access = Access(keys, fake_reviewer(reviews), RateLimiter(100, 100), RateLimiter(0.001, 2), *caps)

    def answer(headers: dict[str, str], address: str = "10.0.0.1") -> tuple[int, str | None]:
        try:
            asyncio.run(access.admit(headers, address, "list"))
        except ApiError as error:
            return error.status_code, (error.headers or {}).get("Retry-After")
        return 200, None

    bad_token = {"authorization": "Bearer x.y.z", "x-kubescribe-namespace": "ns"}
    good_token = {"authorization": "Bearer a.b.c", "x-kubescribe-namespace": "ns"}
    assert answer({"x-api-key": "ks_bad"})[0] == 401
    assert answer(bad_token)[0] == 401
    assert reviews.tokens_reviewed == 1
    status, retry_after = answer(bad_token)
    assert status == 429 and retry_after is not None and int(retry_after) >= 1
    assert answer(good_token)[0] == 429  # an address out of failures gets no token review, even for a valid token
    assert reviews.tokens_reviewed == 1
    assert answer({"x-api-key": "ks_good"})[0] == 200
    assert answer({})[0] == 401  # no credential is not a failed check
    assert answer(bad_token, "10.0.0.2")[0] == 401
    assert answer(good_token, "10.0.0.2")[0] == 200
    assert reviews.tokens_reviewed == 2  # x.y.z was reviewed once, and its answer is cached


def test_a_bucket_can_be_looked_at_without_taking() -> None:
    limiter = RateLimiter(1, 1)
    assert limiter.wait("a", 0) == 0
    assert limiter.take("a", 0) == 0
    assert limiter.wait("a", 0) == pytest.approx(1)
    assert limiter.wait("a", 0.5) == pytest.approx(0.5)
    assert limiter.take("a", 1) == 0


def test_open_requests_are_counted_per_caller_and_released_however_they_end() -> None:
    uploads = ConcurrencyLimit("uploads", 2)
    assert uploads.acquire("a") and uploads.acquire("a")
    assert not uploads.acquire("a")
    assert uploads.acquire("b")
    uploads.release("a")
    assert uploads.acquire("a")
    assert not uploads.acquire("a")
    for _ in range(3):
        uploads.release("b")
    assert uploads.acquire("b") and uploads.acquire("b")
    assert not uploads.acquire("b")

    streams = ConcurrencyLimit("event streams", 1)
    with holding(streams, "a"):
        with pytest.raises(ApiError) as refused, holding(streams, "a"):
            pass
        assert refused.value.status_code == 429
        assert refused.value.headers is not None and int(refused.value.headers["Retry-After"]) >= 1
        assert "too many event streams at once: at most 1" in str(refused.value.detail)
    with pytest.raises(RuntimeError), holding(streams, "a"):
        raise RuntimeError("the client went away")
    with holding(streams, "a"):
        pass
