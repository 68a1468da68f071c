"""TranscriptionJobs as the gateway sees them: names, the resource it submits, the view it answers with, and
pagination. Pure functions."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import string
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from kubescribe.api.v1alpha1 import API_VERSION, KIND, TranscriptionJobSpec

UPLOADED_SOURCE_ANNOTATION = "kubescribe.io/uploaded-source"
"""The operator deletes the source of a job annotated so ("true") when the job goes."""
FILENAME_ANNOTATION = "kubescribe.io/filename"
REQUEST_ID_ANNOTATION = "kubescribe.io/request-id"
SUBMITTED_BY_LABEL = "kubescribe.io/submitted-by"
GATEWAY_SELECTOR = f"{SUBMITTED_BY_LABEL}=gateway"
FINISHED_PHASES = ("Succeeded", "Failed", "Cancelled")
MAX_FILENAME_CHARS = 200
_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_CHARS = 12


def new_job_id() -> str:
    return "tj-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_CHARS))


def is_job_id(value: str) -> bool:
    return len(value) == 3 + _ID_CHARS and value.startswith("tj-") and all(c in _ID_ALPHABET for c in value[3:])


def sanitize_filename(raw: str | None) -> str:
    """The last path component, without control characters or leading dots, at most 200 characters; never a path."""
    name = unicodedata.normalize("NFC", raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip().lstrip(".").strip()
    if len(name) > MAX_FILENAME_CHARS:
        suffix = PurePosixPath(name).suffix[:16]
        name = name[: MAX_FILENAME_CHARS - len(suffix)] + suffix
    return name or "audio"


def upload_key(namespace: str, job_id: str) -> str:
    return f"uploads/{namespace}/{job_id}/audio"


def build_job(
    namespace: str,
    job_id: str,
    spec: TranscriptionJobSpec,
    filename: str,
    request_id: str,
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": job_id,
            "namespace": namespace,
            "labels": {SUBMITTED_BY_LABEL: "gateway"},
            "annotations": {
                UPLOADED_SOURCE_ANNOTATION: "true",
                FILENAME_ANNOTATION: filename,
                REQUEST_ID_ANNOTATION: request_id,
            },
        },
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def phase(job: Mapping[str, Any]) -> str:
    return str((job.get("status") or {}).get("phase") or "Pending")


def is_finished(job: Mapping[str, Any]) -> bool:
    return phase(job) in FINISHED_PHASES


def status_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def job_view(job: Mapping[str, Any]) -> dict[str, Any]:
    metadata, spec, status = job["metadata"], job.get("spec") or {}, job.get("status") or {}
    progress = status.get("progress")
    current = phase(job)
    error = None
    if current in ("Failed", "Cancelled"):
        error = {"reason": status.get("reason") or current, "message": status.get("message") or ""}
    return {
        "id": metadata["name"],
        "namespace": metadata["namespace"],
        "phase": current,
        "created": metadata.get("creationTimestamp"),
        "filename": (metadata.get("annotations") or {}).get(FILENAME_ANNOTATION),
        "model": spec.get("model"),
        "language": spec.get("language"),
        "task": spec.get("task", "transcribe"),
        "formats": (spec.get("outputs") or {}).get("formats", []),
        "progress": None
        if progress is None
        else {key: progress.get(key) for key in ("percent", "processedSeconds", "durationSeconds", "etaSeconds")},
        "result": status.get("result"),
        "error": error,
        "status_url": status_url(metadata["name"]),
    }


def transcript_filename(job: Mapping[str, Any], format_: str) -> str:
    stem = PurePosixPath(job_view(job)["filename"] or "transcript").stem or "transcript"
    return f"{stem}.{format_}"


def _order(job: Mapping[str, Any]) -> tuple[str, str]:
    metadata = job["metadata"]
    return str(metadata.get("creationTimestamp") or ""), str(metadata["name"])


def encode_page_token(after: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(after)).encode()).decode()


def decode_page_token(token: str) -> tuple[str, str] | None:
    """The position a token names, or None when it is not one of ours."""
    try:
        created, name = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError, binascii.Error):
        return None
    if not isinstance(created, str) or not isinstance(name, str):
        return None
    return created, name


def page(
    jobs: Sequence[Mapping[str, Any]], limit: int, after: tuple[str, str] | None
) -> tuple[list[Mapping[str, Any]], str | None]:
    """Newest first, `limit` at a time, from just after `after`; and the token of the next page."""
    ordered = sorted(jobs, key=_order, reverse=True)
    if after is not None:
        ordered = [job for job in ordered if _order(job) < after]
    chosen = ordered[:limit]
    more = len(ordered) > limit
    return chosen, encode_page_token(_order(chosen[-1])) if more else None
