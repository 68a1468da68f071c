"""The fault report, bench-results/chaos.md and chaos.json: a table per scenario, the commit it ran on."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bench import report
from bench.kube import REPO

COUNTS = (
    ("submitted", "jobs submitted"),
    ("succeeded_exactly_once", "succeeded exactly once"),
    ("failed_with_reason", "failed with a reason"),
    ("lost", "lost (no final phase, or gone)"),
    ("done_twice", "done twice (two runner Jobs, or two runner pods that finished)"),
    ("succeeded_without_outputs", "succeeded without their transcripts in the store"),
    ("runner_pods_started", "runner pods started"),
    ("retries", "retries (runner pods started beyond the first)"),
)


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    return git("rev-parse", "--short", "HEAD") + dirty


def markdown(results: dict[str, Any]) -> str:
    head = results["header"]
    machine = head["machine"]
    lines = [
        "# Kubescribe under faults",
        "",
        f"- commit: {results['commit']}",
        f"- date: {head['date']}",
        f"- machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB memory, no GPU used",
        "- versions: " + ", ".join(f"{name} {version}" for name, version in head["versions"].items()),
        "- every job is a real transcription (tiny.en, CPU) of a few seconds of espeak-ng speech, "
        f"with ttlSecondsAfterFinished {results['ttl_seconds']}",
        "",
    ]
    for title, outcome in results["scenarios"].values():
        lines += [f"## {title}", ""]
        if "error" in outcome:
            lines += [f"Not completed: `{outcome['error']}`", ""]
            continue
        lines += ["| | |", "|---|---:|"]
        lines += [f"| {label} | {outcome[key]} |" for key, label in COUNTS if key in outcome]
        lines += [f"| seconds from the first submission to the last final phase | {outcome['seconds_to_finish']} |"]
        if outcome.get("failure_reasons"):
            lines += ["", "Failure reasons: " + ", ".join(f"{k} {v}" for k, v in outcome["failure_reasons"].items())]
        for key in ("lost_jobs", "done_twice_jobs"):
            if outcome.get(key):
                lines += ["", f"{key.replace('_', ' ')}: " + "; ".join(outcome[key])]
        left = outcome["left_after_ttl"]
        lines += [
            "",
            f"Left {results['ttl_seconds'] + 15} s after the TTL: "
            + ", ".join(f"{kind} {count}" for kind, count in left.items()),
        ]
        extras = {k: v for k, v in outcome.items() if k in EXTRAS}
        for key, value in extras.items():
            lines += ["", f"{EXTRAS[key]}: {_inline(value)}"]
        lines += ["", "Faults injected (seconds since the first submission):", "", "```", *outcome["faults"], "```", ""]
    return "\n".join(lines) + "\n"


EXTRAS = {
    "uploads": "uploads begun at once",
    "concurrent_uploads": "uploads through the gateway begun at once, with the kubectl jobs",
    "upload_outcomes": "upload outcomes (HTTP status, or how the connection ended)",
    "jobs_for_uploads_that_did_not_finish": "jobs for uploads that did not finish",
    "incomplete_multipart_uploads_after_the_kill": "incomplete multipart uploads right after the kill",
    "incomplete_multipart_uploads_left": "incomplete multipart uploads left at the end",
    "upload_objects_without_a_job": "uploaded objects without a job",
    "upload_objects_left_once_the_jobs_were_deleted": "uploaded objects left once the jobs were deleted",
    "uploads_begun_while_the_store_was_down": "gateway answers to uploads begun while the store was down",
    "uploads_begun_after_it_came_back": "gateway answers to uploads begun after it came back",
    "answers_503_with_retry_after": "503 answers that carried Retry-After",
    "operator_rss_mib": "operator resident memory (MiB)",
    "gateway_rss_mib": "gateway resident memory (MiB)",
    "apiserver_requests_per_second": "API server requests per second while the queue drained",
    "priority_order": "admission order",
    "event_streams": "event streams (GET /v1/jobs/{id}/events) followed through the faults",
    "gateway_job_reads": "the gateway's job reads (GET /v1/jobs/{id}) while the queue drained",
}


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in value.items())
    return str(value)


def write(directory: Path, results: dict[str, Any]) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "chaos.json").write_text(json.dumps(results, indent=2) + "\n")
    path = directory / "chaos.md"
    path.write_text(markdown(results))
    return path


header = report.header
