"""Requests each caller may have open at once, per kind (uploads, event streams, waits for a transcription): pure
counters, and the 429 answered when a caller has all of its kind open."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kubescribe.gateway.errors import ApiError

RETRY_SECONDS = 5
"""What a refused request is told to wait: open requests of these kinds end in seconds to minutes."""


class ConcurrencyLimit:
    """At most `limit` open requests of one kind (`what`, for messages) per caller identity."""

    def __init__(self, what: str, limit: int) -> None:
        self.what, self.limit = what, limit
        self._open: dict[str, int] = {}

    def acquire(self, identity: str) -> bool:
        """Counts one more open request of `identity` and returns True, or returns False if it has `limit` open."""
        count = self._open.get(identity, 0)
        if count >= self.limit:
            return False
        self._open[identity] = count + 1
        return True

    def release(self, identity: str) -> None:
        count = self._open.get(identity, 0) - 1
        if count > 0:
            self._open[identity] = count
        else:
            self._open.pop(identity, None)


@contextmanager
def holding(limit: ConcurrencyLimit, identity: str) -> Iterator[None]:
    """One of the caller's open requests of `limit`'s kind for the length of the block, released however it ends;
    ApiError 429 when the caller has all of them open."""
    if not limit.acquire(identity):
        raise ApiError(
            429,
            f"too many {limit.what} at once: at most {limit.limit} per API key or token",
            code="too_many_concurrent_requests",
            headers={"Retry-After": str(RETRY_SECONDS)},
        )
    try:
        yield
    finally:
        limit.release(identity)
