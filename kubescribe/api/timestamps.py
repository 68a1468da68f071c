"""Times as Kubernetes writes them in resources: RFC 3339 in UTC, whole seconds (`2025-01-01T12:00:00Z`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(value: str) -> datetime:
    """An RFC 3339 time as an aware datetime (fractions of a second and offsets are accepted)."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def now_timestamp() -> str:
    return format_timestamp(datetime.now(UTC))
