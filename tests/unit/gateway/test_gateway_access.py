"""Who may call: API keys, credentials, token reviews' inputs, rate limits."""

from __future__ import annotations

import base64
import json

import pytest

from kubescribe.gateway.access.caller import Unauthenticated, authenticate, credential
from kubescribe.gateway.access.keys import KeyRecord, KeyStore, hash_key, new_key, parse_records
from kubescribe.gateway.access.ratelimit import RateLimiter, TokenBucket, retry_after_header
from kubescribe.gateway.access.tokens import looks_like_jwt


def encoded(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def test_keys_are_random_and_stored_as_hashes() -> None:
    key = new_key()
    assert key.startswith("ks_") and len(key) > 40 and key != new_key()
    records = parse_records(
        {hash_key(key): encoded({"namespace": "a", "name": "alice", "created": "now"}), "bad": "!!", "x": encoded([])}
    )
    assert records == {hash_key(key): KeyRecord(hash_key(key), "a", "alice", "now")}


def test_the_key_store_reads_again_when_stale() -> None:
    loads, now = [], [0.0]
    record = KeyRecord(hash_key("k"), "a", "alice", "t")

    def load() -> dict[str, KeyRecord]:
        loads.append(now[0])
        return {record.hash: record}

    store = KeyStore(load, 5, clock=lambda: now[0])
    assert store.lookup("k") == record
    now[0] = 4
    assert store.lookup("other") is None
    now[0] = 5
    store.lookup("k")
    assert loads == [0, 5]


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
    store = KeyStore(lambda: {record.hash: record}, 60)
    principal = authenticate({"x-api-key": "ks_good"}, store, None)
    assert (principal.namespace, principal.subject, principal.identity) == ("team-a", "alice", record.hash)
    for headers in ({}, {"x-api-key": "ks_bad"}, {"authorization": "Bearer a.b.c"}):
        with pytest.raises(Unauthenticated):
            authenticate(headers, store, None)


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
