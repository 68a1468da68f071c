"""Per-caller token buckets: pure decisions, with the clock passed in."""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_BUCKETS = 100_000


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    updated: float

    def wait(self, now: float) -> float:
        """0 if there is a token; otherwise the seconds until there is one. Takes nothing."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            return 0.0
        return (1 - self.tokens) / self.rate if self.rate > 0 else math.inf

    def take(self, now: float) -> float:
        """Takes a token if there is one and returns 0; otherwise the seconds until there is one."""
        wait = self.wait(now)
        if wait == 0:
            self.tokens -= 1
        return wait

    def charge(self, count: int, now: float) -> None:
        """Takes `count` tokens, those it lacks on credit: until they have come back, it has none to give."""
        self.wait(now)
        self.tokens -= count


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        self._rate, self._burst = rate, float(burst)
        self._buckets: dict[str, TokenBucket] = {}

    def _bucket(self, identity: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(identity)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._buckets.clear()
            bucket = self._buckets[identity] = TokenBucket(self._rate, self._burst, self._burst, now)
        return bucket

    def take(self, identity: str, now: float) -> float:
        return self._bucket(identity, now).take(now)

    def charge(self, identity: str, count: int, now: float) -> None:
        """Takes `count` of `identity`'s tokens at once, on credit where it lacks them (a batch's jobs, each the cost
        of a request): its next requests wait until they have come back."""
        self._bucket(identity, now).charge(count, now)

    def wait(self, identity: str, now: float) -> float:
        """0 if `identity` has a token left; otherwise the seconds until it has. Takes nothing."""
        bucket = self._buckets.get(identity)
        return 0.0 if bucket is None else bucket.wait(now)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(min(seconds, 3600))))
