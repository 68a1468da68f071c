"""What the finalizer deletes with a job: its transcripts, and its source when it was uploaded for it. A store that
fails is tried again with backoff for `cleanup_timeout_seconds` at most; then the job is let go without, and a
Warning Event (`ABANDONED`) says how many objects were left, and where."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from pydantic import ValidationError

from kubescribe.operator import builders
from kubescribe.operator.settings import OperatorSettings

ABANDONED = "CleanupAbandoned"
"""The reason of the Warning Event of a job let go with objects left in the store."""
FIRST_DELAY_SECONDS = 5
MAX_DELAY_SECONDS = 60
SHOWN_URIS = 5


@dataclass(frozen=True)
class Leftovers:
    """The objects the store did not delete, and the last reason it gave."""

    uris: list[str]
    error: str


def delete_objects(tj: dict[str, Any], settings: OperatorSettings, store: Minio) -> Leftovers | None:
    """Deletes the job's objects; returns those left, if any. A job whose spec the operator cannot read never ran,
    so nothing was written for it; nor in a bucket that does not exist."""
    try:
        doomed = builders.owned_objects(tj, settings)
    except ValidationError:
        return None
    left: list[str] = []
    error = ""
    for bucket, keys in doomed.items():
        try:
            failed = _delete(store, bucket, keys)
        except (MinioException, urllib3.exceptions.HTTPError) as failure:
            failed = [(key, type(failure).__name__) for key in keys]
        left += [f"s3://{bucket}/{key}" for key, _ in failed]
        error = failed[-1][1] if failed else error
    return Leftovers(left, error) if left else None


def _delete(store: Minio, bucket: str, keys: list[str]) -> list[tuple[str, str]]:
    """Deletes the keys in one request, or with one request each from a store that refuses that one (as Google
    Cloud Storage's S3 interface does); the keys it did not delete, with the store's reason."""
    try:
        failures = store.remove_objects(bucket, [DeleteObject(key) for key in keys])
        return [(str(failure.name), failure.code or "DeleteError") for failure in failures]
    except S3Error as refused:
        if refused.code == "NoSuchBucket":
            return []
    failed = []
    for key in keys:
        try:
            store.remove_object(bucket, key)
        except S3Error as failure:
            if failure.code not in ("NoSuchBucket", "NoSuchKey"):
                failed.append((key, failure.code or type(failure).__name__))
    return failed


def retry_delay(retry: int) -> float:
    """Seconds before the finalizer's next try, after `retry` tries that failed: 5, 10, 20, 40, then 60 each."""
    return float(min(FIRST_DELAY_SECONDS * 2 ** min(retry, 8), MAX_DELAY_SECONDS))


def gives_up(elapsed: float, retry: int, timeout: float) -> bool:
    """Whether the finalizer lets the job go now, `elapsed` seconds after its first try: when the next try would
    come past `timeout`."""
    return elapsed + retry_delay(retry) > timeout


def abandoned_message(left: Leftovers, timeout: float) -> str:
    shown = ", ".join(left.uris[:SHOWN_URIS])
    if len(left.uris) > SHOWN_URIS:
        shown += f" and {len(left.uris) - SHOWN_URIS} more"
    count = f"{len(left.uris)} object" + ("s" if len(left.uris) > 1 else "")
    return (
        f"the store did not delete the job's objects within {timeout:g} s ({left.error}): the job is gone, "
        f"{count} left in the store: {shown}"
    )
