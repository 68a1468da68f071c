"""What a pool's worker makes of RunnerAssignments: which to claim, what an attempt's logs name, what its status
says when it fails, and what must never be written anywhere."""

from __future__ import annotations

import urllib.parse
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from kubescribe.api.v1alpha1 import same_model
from kubescribe.contract import ENV_STORE_GRANTS, EXIT_BAD_INPUT, StoreGrants
from kubescribe.runner.errors import RunnerFailure, failure_report

CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def has_outcome(assignment: Mapping[str, Any]) -> bool:
    status = assignment.get("status") or {}
    return bool(status.get("result") or status.get("failure"))


def candidates(assignments: Iterable[Mapping[str, Any]], passed: Collection[str]) -> list[Mapping[str, Any]]:
    """The assignments worth trying to claim, oldest first: those without an outcome whose names are not `passed`
    (running here already, or found claimed by another worker)."""
    open_ = [a for a in assignments if not has_outcome(a) and a["metadata"]["name"] not in passed]
    return sorted(open_, key=lambda a: (a["metadata"].get("creationTimestamp") or "", a["metadata"]["name"]))


def log_fields(assignment: Mapping[str, Any]) -> dict[str, Any]:
    """What each log line of the assignment's attempt names: the job and which attempt of it."""
    spec = assignment.get("spec") or {}
    job = spec.get("job") or {}
    return {
        "assignment": assignment["metadata"]["name"],
        "job": job.get("name"),
        "jobNamespace": job.get("namespace"),
        "attempt": spec.get("attempt"),
    }


def attempt_secrets(environment: Mapping[str, str]) -> list[str]:
    """What the attempt's logs and status must not show: its presigned URLs, their query strings (the signatures)
    on their own, and any store credentials it was given."""
    urls = _grant_urls(environment.get(ENV_STORE_GRANTS) or "")
    secrets = [*urls, *(urllib.parse.urlsplit(url).query for url in urls)]
    secrets += [environment.get(name, "") for name in CREDENTIAL_VARIABLES]
    return [secret for secret in secrets if secret]


def _grant_urls(raw: str) -> list[str]:
    try:
        grants = StoreGrants.model_validate_json(raw)
    except ValidationError:
        return []
    return [grant.url for grant in (grants.source, *grants.outputs.values(), *grants.model.values()) if grant]


def failure_status(failure: RunnerFailure, secrets: Iterable[str]) -> dict[str, Any]:
    """The status patch of a failed attempt: what a runner pod's termination message and exit code would say."""
    return {"status": {"failure": {**failure_report(failure, secrets), "exitCode": failure.exit_code}}}


def check_model(job_model: str, pool_model: str) -> None:
    """The pool takes only jobs of its own model; the operator sends no other, and a worker runs none."""
    if not same_model(job_model, pool_model):
        raise RunnerFailure(
            EXIT_BAD_INPUT, "ModelMismatch", f"the job's model {job_model} is not the pool's model {pool_model}"
        )
