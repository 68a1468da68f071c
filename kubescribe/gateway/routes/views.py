"""Jobs as the API shows them: the view of a TranscriptionJob, a transcript's download name, and pages of jobs.
Pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError

from kubescribe.api.v1alpha1 import FINISHED_PHASES, TranscriptionJobSpec, phase_of, transcript_uris
from kubescribe.gateway.intake.resource import FILENAME_ANNOTATION


def status_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def job_view(job: Mapping[str, Any]) -> dict[str, Any]:
    metadata, spec, status = job["metadata"], job.get("spec") or {}, job.get("status") or {}
    progress = status.get("progress")
    current = phase_of(status)
    error = None
    if current in ("Failed", "Cancelled"):
        error = {"reason": status.get("reason") or current, "message": status.get("message") or ""}
    return {
        "id": metadata["name"],
        "namespace": metadata["namespace"],
        "phase": current,
        "finished": current in FINISHED_PHASES,
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


def transcript_uri(job: Mapping[str, Any], format_: str, output_bucket: str) -> str | None:
    """The job's transcript in `format_` when its result names it; None otherwise. Only the job's own place in
    the default output bucket is served: the status is written by the job's runner too, and a spec's own output
    location in the gateway's store may name anyone's objects."""
    metadata = job["metadata"]
    named = (((job.get("status") or {}).get("result") or {}).get("outputs") or {}).get(format_)
    try:
        spec = TranscriptionJobSpec.model_validate(job.get("spec") or {})
    except ValidationError:
        return None
    if named is None or spec.outputs.s3 is not None:
        return None
    own = transcript_uris(spec, metadata["namespace"], metadata["name"], output_bucket).get(format_)
    return named if named == own else None


def transcript_filename(job: Mapping[str, Any], format_: str) -> str:
    stem = PurePosixPath(job_view(job)["filename"] or "transcript").stem or "transcript"
    return f"{stem}.{format_}"


def _order(job: Mapping[str, Any]) -> tuple[str, str]:
    metadata = job["metadata"]
    return str(metadata.get("creationTimestamp") or ""), str(metadata["name"])


PAGE_TOKEN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"  # noqa: S105
"""A page token: the creation time and name of the last job of the previous page. Every string of this pattern is a
position in the list, so the API checks the pattern alone."""


def encode_page_token(after: tuple[str, str]) -> str:
    return "/".join(after)


def decode_page_token(token: str) -> tuple[str, str]:
    created, _, name = token.partition("/")
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
