"""A TranscriptionJob's status as a pure function of what is observed now: its batch/v1 Job, the Job's runner
pods and the admission queue's decision, or Kueue's for a job handed to Kueue. Nothing is remembered between
calls except what the status itself records: admission (the Admitted condition), the first start time, and a
finished status once the job has no Job left to say otherwise. A job a RunnerPool runs has RunnerAssignments instead
of a Job, one per attempt, and their Leases instead of pods (`pooled_attempts`, `compute_pooled_status`).

The runner's ServiceAccount may patch the whole status, so nothing the status says is believed where the cluster
can tell: while the Job exists the phase comes from it and its pods, and the runner's `progress` and `result` are
kept only as far as they are well-formed and name the job's own transcripts.

The dicts returned are the resource's camelCase shape. They hold every field the operator owns, None where it
is cleared, so that applying one as a JSON merge patch to the status subresource removes stale values."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from kubescribe.api.pools import LEASE_SECONDS, Failure
from kubescribe.api.timestamps import format_timestamp, parse_timestamp
from kubescribe.api.v1alpha1 import FINISHED_PHASES, Progress, Result, TranscriptionJobSpec, is_finished
from kubescribe.contract import EXIT_BAD_INPUT, EXIT_SOURCE_NOT_FOUND, NOT_RETRIED_EXIT_CODES
from kubescribe.operator.builders import RUNNER_CONTAINER
from kubescribe.operator.kueue import KUEUE_ADMITTED, KueueState

EXCEEDS_GPU_QUOTA: Final = "ExceedsGPUQuota"
INVALID_SPEC: Final = "InvalidSpec"
"""A spec the operator, or the API server for one of the job's children, cannot take."""
REASONS_BY_EXIT_CODE: Final = {EXIT_BAD_INPUT: "BadInput", EXIT_SOURCE_NOT_FOUND: "SourceNotFound"}
"""Failure reasons for a runner that exited without a termination message of its own."""
RUNNER_FAILED: Final = "RunnerFailed"
EXACT_QUEUE_POSITIONS: Final = 10
"""Queue positions up to this are shown exactly. Beyond, a job's shown position changes only once it is a tenth
off: each admission then rewrites the status of a few queued jobs, not of the whole queue."""

Event = tuple[str, str, str]
"""(type "Normal" or "Warning", reason, message) of a Kubernetes Event."""


@dataclass(frozen=True)
class _Phase:
    phase: str
    reason: str
    message: str


@dataclass(frozen=True)
class _RunnerExit:
    code: int
    message: str
    finished_at: str | None


def has_condition(status: Mapping[str, Any] | None, type_: str) -> bool:
    """Whether the status has the condition `type_` with status True."""
    return any(c["type"] == type_ and c["status"] == "True" for c in (status or {}).get("conditions", []))


def _true_job_conditions(job: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conditions = job.get("status", {}).get("conditions", [])
    return {c["type"]: c for c in conditions if c.get("status") == "True"}


def runner_job_finished(job: Mapping[str, Any]) -> bool:
    """Whether the batch Job is done with its pods: complete, or failed."""
    conditions = _true_job_conditions(job)
    return "Complete" in conditions or "Failed" in conditions


def _created(pod: Mapping[str, Any]) -> tuple[str, str]:
    return pod["metadata"].get("creationTimestamp", ""), pod["metadata"]["name"]


def _disrupted(pod: Mapping[str, Any]) -> bool:
    """Evicted or preempted: the Job's failure policy ignores such a pod."""
    return any(
        c.get("type") == "DisruptionTarget" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def _runner_exit(pod: Mapping[str, Any]) -> _RunnerExit | None:
    for container in pod.get("status", {}).get("containerStatuses", []):
        terminated = container.get("state", {}).get("terminated")
        if container.get("name") == RUNNER_CONTAINER and terminated is not None:
            return _RunnerExit(
                terminated.get("exitCode", 0),
                terminated.get("message", ""),
                terminated.get("finishedAt"),
            )
    return None


def _latest_failed_exit(pods: Sequence[Mapping[str, Any]]) -> _RunnerExit | None:
    exits = [_runner_exit(pod) for pod in sorted(pods, key=_created) if not _disrupted(pod)]
    failed = [found for found in exits if found is not None and found.code != 0]
    return failed[-1] if failed else None


def _runner_failure(runner_exit: _RunnerExit) -> tuple[str, str]:
    """Reason and message from the runner's termination message (`{"reason", "message"}`), else from its exit code
    and whatever the message holds (the end of its log)."""
    try:
        report = json.loads(runner_exit.message)
    except ValueError:
        report = None
    if isinstance(report, dict) and isinstance(report.get("reason"), str) and report["reason"]:
        return report["reason"], str(report.get("message", ""))
    reason = REASONS_BY_EXIT_CODE.get(runner_exit.code, RUNNER_FAILED)
    return reason, runner_exit.message.strip() or f"the runner exited with code {runner_exit.code}"


def _failure(job_condition: Mapping[str, Any] | None, runner_exit: _RunnerExit | None) -> _Phase:
    """The runner's own account of its last failure wins, except past the deadline, when the runner was killed."""
    if runner_exit is not None and (job_condition is None or job_condition.get("reason") != "DeadlineExceeded"):
        return _Phase("Failed", *_runner_failure(runner_exit))
    condition = job_condition or {}
    return _Phase("Failed", condition.get("reason", "JobFailed"), condition.get("message", "the runner Job failed"))


def _waiting_message(pod: Mapping[str, Any]) -> str:
    """Why a pending pod is not running yet: unschedulable, pulling its image, ..."""
    status = pod.get("status", {})
    for condition in status.get("conditions", []):
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return str(condition.get("message") or condition.get("reason", "unschedulable"))
    for container in status.get("containerStatuses", []):
        waiting = container.get("state", {}).get("waiting")
        if waiting:
            return ": ".join(filter(None, (waiting.get("reason"), waiting.get("message"))))
    return f"runner pod {pod['metadata']['name']} is pending"


def _unfinished_job_phase(
    job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], runner_exit: _RunnerExit | None
) -> _Phase:
    live = [pod for pod in sorted(pods, key=_created) if pod.get("status", {}).get("phase") != "Failed"]
    if live and live[-1].get("status", {}).get("phase", "Pending") == "Pending":
        return _Phase("Running", "PodPending", _waiting_message(live[-1]))
    if live:
        return _Phase("Running", "PodRunning", f"runner pod {live[-1]['metadata']['name']} is running")
    if runner_exit is not None:
        return _Phase("Running", "Retrying", f"{_runner_failure(runner_exit)[1]}; retrying")
    if job.get("spec", {}).get("suspend"):
        return _Phase("Pending", "JobSuspended", f"Job {job['metadata']['name']} is suspended")
    return _Phase("Pending", "JobCreated", f"waiting for a pod of Job {job['metadata']['name']}")


def _job_phase(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> _Phase:
    conditions = _true_job_conditions(job)
    if "Complete" in conditions:
        return _Phase("Succeeded", "Completed", "the transcripts are written")
    runner_exit = _latest_failed_exit(pods)
    # FailureTarget is written as soon as the Job is bound to fail, before its pods are gone and Failed follows.
    job_failure = conditions.get("Failed") or conditions.get("FailureTarget")
    if job_failure is not None or (runner_exit is not None and runner_exit.code in NOT_RETRIED_EXIT_CODES):
        return _failure(job_failure, runner_exit)
    return _unfinished_job_phase(job, pods, runner_exit)


def _suspended(job: Mapping[str, Any]) -> bool:
    """Suspended and not finished: Kueue has not started it yet, or has preempted it."""
    return bool(job.get("spec", {}).get("suspend")) and not runner_job_finished(job)


def _kueue_phase(kueue: KueueState) -> _Phase:
    if kueue.waiting is not None:
        return _Phase("Queued", *kueue.waiting)
    return _Phase("Pending", KUEUE_ADMITTED, f"{_kueue_admission(kueue)}; Kueue starts the runner")


def _kueue_admission(kueue: KueueState) -> str:
    return f"admitted by Kueue's ClusterQueue {kueue.cluster_queue or '(unknown)'}"


def _phase(
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    *,
    admitted: bool,
    queue_position: int | None,
    rejection: tuple[str, str] | None,
    kueue: KueueState | None,
) -> _Phase:
    if job is not None and not (kueue is not None and _suspended(job)):
        return _job_phase(job, pods)
    if rejection is not None and job is None:
        return _Phase("Failed", *rejection)
    if kueue is not None:
        return _kueue_phase(kueue)
    if admitted:
        return _Phase("Pending", "Admitted", "admitted; creating the runner Job")
    if queue_position is not None:
        return _Phase("Queued", "Queued", f"waiting for admission at position {queue_position}")
    return _Phase("Pending", "AwaitingAdmission", "waiting for the admission decision")


def _completion_time(
    phase: str, job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]], now: datetime
) -> str | None:
    if phase not in FINISHED_PHASES:
        return None
    if phase == "Succeeded":
        candidates = [(job or {}).get("status", {}).get("completionTime")]
    else:
        conditions = _true_job_conditions(job) if job is not None else {}
        candidates = [conditions.get(type_, {}).get("lastTransitionTime") for type_ in ("Failed", "FailureTarget")]
        runner_exit = _latest_failed_exit(pods)
        candidates.append(runner_exit.finished_at if runner_exit is not None else None)
    found: str = next((candidate for candidate in candidates if candidate), format_timestamp(now))
    return found


def _start_time(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]]) -> str | None:
    pod_starts: list[str] = sorted(start for pod in pods if (start := pod.get("status", {}).get("startTime")))
    if pod_starts:
        return pod_starts[0]
    job_start: str | None = (job or {}).get("status", {}).get("startTime")
    return job_start


def _attempts(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]]) -> int:
    """Runner pods created so far: the Job's counters outlive deleted pods, the pods count evicted ones too."""
    counts = (job or {}).get("status", {})
    counted: int = sum(counts.get(key, 0) for key in ("active", "succeeded", "failed"))
    return max(counted, len(pods))


def _conditions(
    current: Sequence[Mapping[str, Any]],
    observed: _Phase,
    *,
    admitted: bool,
    admission: tuple[str, str],
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """One condition per type; `admission` is the reason and message of a true Admitted condition.
    lastTransitionTime moves only when the condition's status changes."""
    previous = {c["type"]: c for c in current}
    wanted = {
        "Admitted": admitted,
        "Running": observed.phase == "Running",
        "Complete": observed.phase == "Succeeded",
        "Failed": observed.phase == "Failed",
    }
    conditions = []
    for type_, is_true in wanted.items():
        status = "True" if is_true else "False"
        before = previous.get(type_)
        admitted_now = type_ == "Admitted" and is_true
        conditions.append(
            {
                "type": type_,
                "status": status,
                "reason": admission[0] if admitted_now else observed.reason,
                "message": admission[1] if admitted_now else observed.message,
                "lastTransitionTime": before["lastTransitionTime"]
                if before is not None and before.get("status") == status
                else format_timestamp(now),
                "observedGeneration": generation,
            }
        )
    return conditions + [dict(c) for c in current if c["type"] not in wanted]


def _model_dump(model: type[BaseModel], raw: Any) -> dict[str, Any] | None:
    try:
        parsed = model.model_validate(raw)
    except ValidationError:
        return None
    return parsed.model_dump(mode="json", by_alias=True, exclude_none=True)


def reported_progress(raw: Any) -> dict[str, Any] | None:
    """The runner's progress report, or None unless it is well-formed and within bounds."""
    return None if raw is None else _model_dump(Progress, raw)


def _terminated_result(pods: Sequence[Mapping[str, Any]]) -> Any:
    """The result a runner that succeeded left in its termination message, if any."""
    for pod in pods:
        runner_exit = _runner_exit(pod)
        if runner_exit is None or runner_exit.code != 0:
            continue
        try:
            report = json.loads(runner_exit.message)
        except ValueError:
            continue
        if isinstance(report, dict) and "result" in report:
            return report["result"]
    return None


def reported_result(raw: Any, expected_outputs: Mapping[str, str]) -> dict[str, Any] | None:
    """The runner's result, or None unless it is well-formed; of its outputs only those that name the job's own
    transcript of their format (`expected_outputs`) are kept."""
    result = None if raw is None else _model_dump(Result, raw)
    if result is None:
        return None
    outputs = result.get("outputs", {})
    result["outputs"] = {format_: uri for format_, uri in outputs.items() if expected_outputs.get(format_) == uri}
    return result


def compute_status(
    tj: Mapping[str, Any],
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    *,
    admitted: bool,
    queue_position: int | None,
    now: datetime,
    expected_outputs: Mapping[str, str],
    rejection: tuple[str, str] | None = None,
    kueue: KueueState | None = None,
    waiting: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The job's status from its Job (None when not created), the Job's runner pods, whether the queue admitted it
    (admission recorded in the current status or shown by an existing Job counts too), its queue position while
    waiting, the URIs of its transcripts by format, and the reason and message of its rejection when it may never
    run (the queue can never admit it, or the storage policy forbids it), Kueue's decisions when the job is
    Kueue's (`kueue`): then admission is Kueue's alone, and lost again when Kueue preempts the job, and why a job
    that is not admitted waits other than in the queue (`waiting`: no pool has room for it). A finished
    status is kept only while the job has no Job: one that exists decides the phase. The runner's `progress` and
    `result` are kept from the current status as far as they can be believed."""
    current: dict[str, Any] = dict(tj.get("status") or {})
    reported = {
        "progress": reported_progress(current.get("progress")),
        "result": reported_result(_terminated_result(pods) or current.get("result"), expected_outputs),
    }
    if is_finished(current) and job is None:
        return {**current, **reported}
    if kueue is None:
        admitted = admitted or job is not None or has_condition(current, "Admitted")
        admission = ("Admitted", "admitted to run")
    else:
        admitted = kueue.admitted or (job is not None and not job.get("spec", {}).get("suspend"))
        admission = (KUEUE_ADMITTED, _kueue_admission(kueue))
    queue_position = shown_queue_position(current.get("queuePosition"), queue_position)
    if waiting is not None and job is None and rejection is None:
        observed = _Phase("Queued", *waiting)
    else:
        observed = _phase(job, pods, admitted=admitted, queue_position=queue_position, rejection=rejection, kueue=kueue)
    generation = tj["metadata"].get("generation")
    status: dict[str, Any] = {
        "phase": observed.phase,
        "reason": observed.reason,
        "message": observed.message,
        "queuePosition": queue_position if observed.phase == "Queued" else None,
        "conditions": _conditions(
            current.get("conditions", []),
            observed,
            admitted=admitted,
            admission=admission,
            generation=generation,
            now=now,
        ),
        "startTime": current.get("startTime") or _start_time(job, pods),
        "completionTime": _completion_time(observed.phase, job, pods, now),
        "attempts": _attempts(job, pods),
        "observedGeneration": generation,
        "jobName": job["metadata"]["name"] if job is not None else None,
        "pool": None,
        "assignment": None,
    }
    status.update(reported)
    return status


# -- a job run by a pool ------------------------------------------------------------------------------------------

WORKER_LOST: Final = "WorkerLost"
MAX_WORKER_LOSSES: Final = 2
"""A pooled job fails once its worker is lost this often: it runs again once, as after a runner pod's disruption."""
DEADLINE_EXCEEDED: Final = "DeadlineExceeded"


@dataclass(frozen=True)
class PooledAttempts:
    """What a pooled job's assignments and their Leases say, and what the operator does about them."""

    phase: _Phase
    pool: str
    current: Mapping[str, Any]
    """The latest assignment."""
    attempts: int
    """Assignments made: the latest one's attempt (lost ones are deleted)."""
    started: str
    """When the earliest assignment left was made."""
    retry: int | None
    """The attempt to assign next, in the same pool, when the job runs again."""
    doomed: tuple[str, ...]
    """Assignments to delete: lost ones, and the unfinished one of a job past its deadline."""
    next_check: datetime | None
    """When the outcome changes by itself: the current Lease runs out, or the deadline passes."""


def _attempt(assignment: Mapping[str, Any]) -> int:
    attempt: int = assignment["spec"]["attempt"]
    return attempt


def lease_expiry(lease: Mapping[str, Any]) -> datetime | None:
    """When a Lease runs out unless renewed: its last renewal (or acquisition) plus its duration."""
    spec = lease.get("spec") or {}
    renewed = spec.get("renewTime") or spec.get("acquireTime") or lease["metadata"].get("creationTimestamp")
    if not renewed:
        return None
    return parse_timestamp(renewed) + timedelta(seconds=spec.get("leaseDurationSeconds") or LEASE_SECONDS)


def _lease_of(assignment: Mapping[str, Any], leases: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The assignment's Lease: of its name and, where the Lease names an owner, owned by this very assignment."""
    lease = leases.get(assignment["metadata"]["name"])
    if lease is None:
        return None
    owners = {owner.get("uid") for owner in lease["metadata"].get("ownerReferences") or []}
    return lease if not owners or assignment["metadata"].get("uid") in owners else None


def _outcome(assignment: Mapping[str, Any], lease: Mapping[str, Any] | None, now: datetime) -> str:
    """Succeeded, Failed (reported by its worker), Lost (its Lease ran out), Claimed or Assigned (no worker yet)."""
    status = assignment.get("status") or {}
    if _model_dump(Result, status.get("result")) is not None:
        return "Succeeded"
    if _model_dump(Failure, status.get("failure")) is not None:
        return "Failed"
    if lease is None:
        return "Assigned"
    expiry = lease_expiry(lease)
    return "Lost" if expiry is not None and expiry <= now else "Claimed"


def _holder(lease: Mapping[str, Any] | None, otherwise: str) -> str:
    return str((lease or {}).get("spec", {}).get("holderIdentity") or otherwise)


def _unfinished_attempt(
    outcome: str, lease: Mapping[str, Any] | None, pool: str, attempt: int, losses: int
) -> tuple[_Phase, bool]:
    """The phase of a job whose current attempt has no outcome yet, or was lost; and whether it runs again."""
    if outcome == "Lost":
        message = f"{_holder(lease, 'its worker')} of pool {pool} stopped renewing the Lease of attempt {attempt}"
        if losses >= MAX_WORKER_LOSSES:
            return _Phase("Failed", WORKER_LOST, f"{message}; the job's second lost worker"), False
        return _Phase("Running", "Retrying", f"{message}; retrying"), True
    if outcome == "Claimed":
        return _Phase("Running", "WorkerRunning", f"{_holder(lease, 'a worker')} of pool {pool} is running it"), False
    return _Phase("Running", "Assigned", f"assigned to pool {pool}; waiting for a worker to take it"), False


def _failed_attempt(failure: Mapping[str, Any], failures: int, backoff_limit: int) -> tuple[_Phase, bool]:
    """The phase of a job whose current attempt failed, and whether it runs again."""
    if failure.get("exitCode") in NOT_RETRIED_EXIT_CODES or failures > backoff_limit:
        return _Phase("Failed", failure["reason"], failure["message"]), False
    return _Phase("Running", "Retrying", f"{failure['message']}; retrying"), True


def pooled_attempts(
    tj: Mapping[str, Any],
    assignments: Sequence[Mapping[str, Any]],
    leases: Mapping[str, Mapping[str, Any]],
    now: datetime,
) -> PooledAttempts:
    """The job's outcome from its assignments (at least one) and the Leases by name. A failure its worker reports
    runs the job again, as a new attempt, while failures are at most spec.backoffLimit, unless its exit code is not
    worth retrying; a lost worker runs it again once; activeDeadlineSeconds counts from the first assignment. A
    finished status stays as it is."""
    spec = TranscriptionJobSpec.model_validate(tj["spec"])
    ordered = sorted(assignments, key=_attempt)
    latest = ordered[-1]
    outcomes = [_outcome(assignment, _lease_of(assignment, leases), now) for assignment in ordered]
    lost = tuple(a["metadata"]["name"] for a, outcome in zip(ordered, outcomes, strict=True) if outcome == "Lost")
    attempts, outcome, lease = _attempt(latest), outcomes[-1], _lease_of(latest, leases)
    pool: str = latest["spec"]["pool"]
    started: str = min(a["metadata"].get("creationTimestamp") or format_timestamp(now) for a in ordered)
    recorded = tj.get("status") or {}
    deadline = parse_timestamp(recorded.get("startTime") or started) + timedelta(seconds=spec.active_deadline_seconds)
    unfinished = outcome in ("Assigned", "Claimed")
    again = False
    if is_finished(recorded):
        phase = _Phase(recorded["phase"], recorded.get("reason") or "", recorded.get("message") or "")
    elif outcome == "Succeeded":
        phase = _Phase("Succeeded", "Completed", "the transcripts are written")
    elif now >= deadline and (unfinished or outcome == "Lost"):
        phase = _Phase("Failed", DEADLINE_EXCEEDED, f"the job ran longer than {spec.active_deadline_seconds} s")
    elif outcome == "Failed":
        phase, again = _failed_attempt(latest["status"]["failure"], outcomes.count("Failed"), spec.backoff_limit)
    else:
        losses = attempts - (len(ordered) - len(lost))
        phase, again = _unfinished_attempt(outcome, lease, pool, attempts, losses)
    doomed = lost + ((latest["metadata"]["name"],) if unfinished and phase.phase in FINISHED_PHASES else ())
    expiry = lease_expiry(lease) if lease is not None and outcome == "Claimed" else None
    checks = [moment for moment in (expiry, deadline) if moment is not None] if phase.phase == "Running" else []
    return PooledAttempts(
        phase, pool, latest, attempts, started, attempts + 1 if again else None, doomed, min(checks, default=None)
    )


def compute_pooled_status(
    tj: Mapping[str, Any], attempts: PooledAttempts, *, now: datetime, expected_outputs: Mapping[str, str]
) -> dict[str, Any]:
    """The status of a job a pool runs, from `pooled_attempts`: its phase, and the progress and result its current
    assignment reports (as far as they can be believed, as a runner pod's), in the shape `compute_status` gives."""
    current: dict[str, Any] = dict(tj.get("status") or {})
    observed = attempts.phase
    reported = attempts.current.get("status") or {}
    generation = tj["metadata"].get("generation")
    finished = observed.phase in FINISHED_PHASES
    return {
        "phase": observed.phase,
        "reason": observed.reason,
        "message": observed.message,
        "queuePosition": None,
        "conditions": _conditions(
            current.get("conditions", []),
            observed,
            admitted=True,
            admission=("Admitted", "admitted to run"),
            generation=generation,
            now=now,
        ),
        "startTime": current.get("startTime") or attempts.started,
        "completionTime": (current.get("completionTime") or format_timestamp(now)) if finished else None,
        "attempts": attempts.attempts,
        "observedGeneration": generation,
        "jobName": None,
        "pool": attempts.pool,
        "assignment": attempts.current["metadata"]["name"],
        "progress": reported_progress(reported.get("progress")),
        "result": reported_result(reported.get("result"), expected_outputs),
    }


def shown_queue_position(shown: int | None, actual: int | None) -> int | None:
    """The queue position to show, given the one shown and the actual one (see EXACT_QUEUE_POSITIONS)."""
    if shown is None or actual is None or actual <= EXACT_QUEUE_POSITIONS or abs(shown - actual) * 10 >= shown:
        return actual
    return shown


def merge_patch(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that gives every key of `wanted` its value in `current`. Keys `wanted` lacks are left
    alone, except within an object it replaces, where they are removed (null)."""
    patch: dict[str, Any] = {}
    for key, value in wanted.items():
        before = current.get(key)
        if before == value:
            continue
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            patch[key] = {**merge_patch(before, value), **{gone: None for gone in before if gone not in value}}
        else:
            patch[key] = value
    return patch


def transitions(old_status: Mapping[str, Any] | None, new_status: Mapping[str, Any]) -> list[Event]:
    """The Events to emit for the change from `old_status` to `new_status`: one when the phase changes (a Warning
    when the job failed), and one when the runner is started again while the job is running."""
    old = old_status or {}
    if new_status.get("phase") != old.get("phase"):
        kind = "Warning" if new_status.get("phase") == "Failed" else "Normal"
        return [(kind, new_status.get("reason") or str(new_status.get("phase")), new_status.get("message") or "")]
    old_attempts, new_attempts = old.get("attempts") or 0, new_status.get("attempts") or 0
    if new_status.get("phase") == "Running" and 0 < old_attempts < new_attempts:
        return [("Warning", "Retrying", f"runner pod ended; attempt {new_attempts} started")]
    return []
