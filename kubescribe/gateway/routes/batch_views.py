"""Batches as the API shows them: what became of a submitted batch, a batch's jobs counted by phase, its progress and
each file's outcome, and what cancelling it did. Pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubescribe.api.v1alpha1 import PHASES, is_finished
from kubescribe.gateway.errors import error_body
from kubescribe.gateway.intake.batch import BatchSubmitted
from kubescribe.gateway.intake.resource import BATCH_INDEX_ANNOTATION
from kubescribe.gateway.routes.views import job_view, status_url, transcript_uri


def batch_url(batch_id: str) -> str:
    return f"/v1/batches/{batch_id}"


def batch_created_view(submitted: BatchSubmitted, namespace: str) -> dict[str, Any]:
    return {
        "id": submitted.batch_id,
        "namespace": namespace,
        "jobs": [
            {
                "index": file.index,
                "id": job["metadata"]["name"],
                "filename": file.filename,
                "status_url": status_url(job["metadata"]["name"]),
            }
            for file, job in submitted.created
        ],
        "not_created": [
            {
                "index": file.index,
                "filename": file.filename,
                "source": file.source,
                "error": error_body(error.status_code, str(error.detail), error.param, error.code)["error"],
            }
            for file, error in submitted.failed
        ],
        "status_url": batch_url(submitted.batch_id),
    }


def batch_index(job: Mapping[str, Any]) -> int | None:
    raw = (job["metadata"].get("annotations") or {}).get(BATCH_INDEX_ANNOTATION, "")
    return int(raw) if raw.isdigit() else None


def done(job: Mapping[str, Any]) -> float:
    """How much of the job is done, from 0 to 1: all of a finished one, whatever its phase."""
    status = job.get("status") or {}
    if is_finished(status):
        return 1.0
    percent = (status.get("progress") or {}).get("percent")
    return min(max(float(percent), 0.0), 100.0) / 100 if isinstance(percent, int | float) else 0.0


def duration(job: Mapping[str, Any]) -> float | None:
    """The job's audio's duration in seconds, once the runner or the result has told it."""
    status = job.get("status") or {}
    for found in (
        (status.get("progress") or {}).get("durationSeconds"),
        (status.get("result") or {}).get("durationSeconds"),
    ):
        if isinstance(found, int | float) and found > 0:
            return float(found)
    return None


def batch_progress(jobs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The share of the batch done: by audio duration when every job's is known, else the mean of the jobs'."""
    durations = [duration(job) for job in jobs]
    if jobs and all(seconds is not None for seconds in durations):
        total = sum(seconds or 0.0 for seconds in durations)
        share, by = (
            sum(done(job) * (seconds or 0.0) for job, seconds in zip(jobs, durations, strict=True)) / total,
            "duration",
        )
    else:
        share, by = sum(done(job) for job in jobs) / len(jobs) if jobs else 0.0, "jobs"
    return {"percent": round(share * 100, 1), "by": by}


def phase_counts(views: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    return {phase: sum(1 for view in views if view["phase"] == phase) for phase in PHASES}


def file_view(job: Mapping[str, Any], output_bucket: str) -> dict[str, Any]:
    """One file of a batch: its job's phase, progress and error, and where to download its transcripts."""
    view = job_view(job)
    error = view["error"] or {}
    formats = [f for f in view["formats"] if transcript_uri(job, f, output_bucket) is not None]
    percent = 100.0 if view["phase"] == "Succeeded" else (view["progress"] or {}).get("percent")
    return {
        "index": batch_index(job),
        "id": view["id"],
        "filename": view["filename"],
        "phase": view["phase"],
        "finished": view["finished"],
        "percent": percent,
        "reason": error.get("reason"),
        "message": error.get("message"),
        "transcripts": {f: f"{view['status_url']}/transcript?format={f}" for f in formats},
        "status_url": view["status_url"],
    }


def batch_view(batch_id: str, namespace: str, jobs: Sequence[Mapping[str, Any]], output_bucket: str) -> dict[str, Any]:
    ordered = sorted(jobs, key=lambda job: (batch_index(job) is None, batch_index(job) or 0, job["metadata"]["name"]))
    files = [file_view(job, output_bucket) for job in ordered]
    return {
        "id": batch_id,
        "namespace": namespace,
        "total": len(files),
        "finished": all(file["finished"] for file in files),
        "counts": phase_counts(files),
        "progress": batch_progress(ordered),
        "files": files,
        "status_url": batch_url(batch_id),
    }


def batch_cancelled_view(batch_id: str, cancelled: Sequence[str], kept: Sequence[str]) -> dict[str, Any]:
    return {"id": batch_id, "cancelled": sorted(cancelled), "kept": sorted(kept)}
