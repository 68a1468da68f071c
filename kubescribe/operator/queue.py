"""Admission: which waiting TranscriptionJobs may start now, as a pure function of all jobs.

Admitted, unfinished jobs hold one of the cluster-wide running slots and their GPUs of their namespace's GPU
quota. Waiting jobs are taken in order: higher priority first, then earlier creation, then namespace, name and
uid. A job is admitted while a running slot is free and its GPUs fit its namespace's quota. A job whose GPUs do
not fit waits and holds back every later job of its namespace (so small jobs cannot starve a large one), but
not the jobs of other namespaces. A job that needs more GPUs than the quota allows can never be admitted: it is
rejected instead and holds back nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubescribe.api.timestamps import parse_timestamp
from kubescribe.api.v1alpha1 import TranscriptionJobSpec, is_finished
from kubescribe.operator.status import has_condition, runner_job_finished

Key = tuple[str, str]
"""(namespace, name)"""


@dataclass(frozen=True)
class QueueEntry:
    namespace: str
    name: str
    uid: str
    priority: int
    created: datetime
    gpus: int
    admitted: bool = False
    finished: bool = False

    @property
    def key(self) -> Key:
        return self.namespace, self.name


@dataclass(frozen=True)
class AdmissionPlan:
    admit: list[QueueEntry] = field(default_factory=list)
    positions: dict[Key, int] = field(default_factory=dict)
    """1-based place of every job left waiting; 1 is admitted next."""
    rejected: dict[Key, str] = field(default_factory=dict)
    """Why each job that can never be admitted is rejected."""


def queue_entry(tj: Mapping[str, Any], job: Mapping[str, Any] | None) -> QueueEntry:
    """A TranscriptionJob as the queue sees it, given its runner Job (None when there is none). A job with a Job is
    admitted, and finished only once the Job is, whatever its status says; without one, admission and finishing
    are what its status records (the Admitted condition, the phase)."""
    metadata, status = tj["metadata"], tj.get("status")
    spec = TranscriptionJobSpec.model_validate(tj["spec"])
    return QueueEntry(
        namespace=metadata["namespace"],
        name=metadata["name"],
        uid=metadata["uid"],
        priority=spec.priority,
        created=parse_timestamp(metadata["creationTimestamp"]),
        gpus=spec.resources.gpu,
        admitted=job is not None or has_condition(status, "Admitted"),
        finished=runner_job_finished(job) if job is not None else is_finished(status),
    )


def _order(entry: QueueEntry) -> tuple[int, datetime, str, str, str]:
    return -entry.priority, entry.created, entry.namespace, entry.name, entry.uid


def plan_admission(jobs: Sequence[QueueEntry], *, max_running: int, max_gpus_per_namespace: int) -> AdmissionPlan:
    holding = [job for job in jobs if job.admitted and not job.finished]
    running = len(holding)
    gpus_used: Counter[str] = Counter()
    for job in holding:
        gpus_used[job.namespace] += job.gpus
    plan = AdmissionPlan()
    blocked_namespaces: set[str] = set()
    waiting = sorted((job for job in jobs if not job.admitted and not job.finished), key=_order)
    for job in waiting:
        if job.gpus > max_gpus_per_namespace:
            plan.rejected[job.key] = (
                f"needs {job.gpus} GPUs but a namespace may use at most {max_gpus_per_namespace} at once"
            )
            continue
        fits = gpus_used[job.namespace] + job.gpus <= max_gpus_per_namespace
        if running < max_running and fits and job.namespace not in blocked_namespaces:
            plan.admit.append(job)
            running += 1
            gpus_used[job.namespace] += job.gpus
        else:
            blocked_namespaces.add(job.namespace)
            plan.positions[job.key] = len(plan.positions) + 1
    return plan
