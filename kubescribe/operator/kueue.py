"""Kueue's side of a job, as pure functions of what the cluster holds: which LocalQueue a TranscriptionJob goes to,
and what Kueue has decided for its runner Job (read from the Workload Kueue made of it).

A job handed to Kueue skips the operator's own queue: its runner Job is created at once, suspended, and Kueue
admits it against its ClusterQueue's quota, starts it, and may preempt it (suspend it again), after which it
waits in Kueue's queue to run again."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from kubescribe.api.v1alpha1 import KUEUE_QUEUE_LABEL

PRIORITY_CLASS_LABEL: Final = "kueue.x-k8s.io/priority-class"
"""Names a WorkloadPriorityClass: Kueue's priority for the job, which decides preemption."""
DEFAULT_LOCAL_QUEUE: Final = "default"
"""Kueue puts a namespace's unlabelled Jobs in its LocalQueue of this name, when there is one."""
GROUP: Final = "kueue.x-k8s.io"
VERSION: Final = "v1beta2"

# The reasons of a job's status while Kueue decides for it.
KUEUE_PENDING: Final = "KueuePending"
"""Waiting in a LocalQueue: Kueue has not admitted it yet (the message says what is short)."""
KUEUE_EVICTED: Final = "KueueEvicted"
"""Admitted once, then evicted by Kueue (preempted by a job of higher priority, say): waiting to run again."""
KUEUE_ADMITTED: Final = "KueueAdmitted"
"""Admitted by a ClusterQueue; Kueue starts the runner Job."""


@dataclass(frozen=True)
class KueueState:
    """What Kueue has decided for one job's runner Job."""

    local_queue: str
    cluster_queue: str | None
    """The LocalQueue's ClusterQueue, or the one that admitted the job; None while unknown."""
    admitted: bool
    waiting: tuple[str, str] | None
    """While not admitted: (reason, message) in the job's own words, Kueue's explanation in the message."""


def local_queue(tj: Mapping[str, Any], namespaces_with_default_queue: set[str]) -> str | None:
    """The LocalQueue Kueue takes the job's runner Job into: the job's queue-name label, else its namespace's
    `default` LocalQueue, which Kueue would put the Job in anyway; None: the operator's own queue runs it."""
    metadata = tj["metadata"]
    labelled: str | None = (metadata.get("labels") or {}).get(KUEUE_QUEUE_LABEL)
    if labelled:
        return labelled
    return DEFAULT_LOCAL_QUEUE if metadata["namespace"] in namespaces_with_default_queue else None


def runner_job_labels(tj: Mapping[str, Any], queue: str) -> dict[str, str]:
    """The labels that hand a runner Job to Kueue: its LocalQueue and, when the job names one, its
    WorkloadPriorityClass."""
    found = {KUEUE_QUEUE_LABEL: queue}
    priority_class = (tj["metadata"].get("labels") or {}).get(PRIORITY_CLASS_LABEL)
    if priority_class:
        found[PRIORITY_CLASS_LABEL] = priority_class
    return found


def cluster_queues(local_queues: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """Each LocalQueue's ClusterQueue, by (namespace, name)."""
    return {
        (queue["metadata"]["namespace"], queue["metadata"]["name"]): queue["spec"]["clusterQueue"]
        for queue in local_queues
        if queue.get("spec", {}).get("clusterQueue")
    }


def workloads_by_owner(workloads: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Workloads by the uid of the Job that owns them."""
    return {
        reference["uid"]: workload
        for workload in workloads
        for reference in workload["metadata"].get("ownerReferences", [])
        if reference.get("kind") == "Job" and reference.get("apiVersion") == "batch/v1"
    }


def _condition(workload: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    conditions = (workload.get("status") or {}).get("conditions", [])
    return next((c for c in conditions if c.get("type") == type_), None)


def _is_true(condition: Mapping[str, Any] | None) -> bool:
    return condition is not None and condition.get("status") == "True"


def kueue_state(queue: str, cluster_queue: str | None, workload: Mapping[str, Any] | None) -> KueueState:
    """The state of a job in `queue` (whose ClusterQueue is `cluster_queue`, when known) from its Workload
    (None until Kueue has made one)."""
    if workload is not None and _is_true(_condition(workload, "Admitted")):
        admission = (workload.get("status") or {}).get("admission") or {}
        return KueueState(queue, admission.get("clusterQueue") or cluster_queue, True, None)
    where = f"LocalQueue {queue}" + (f" (ClusterQueue {cluster_queue})" if cluster_queue else "")
    if workload is None:
        return KueueState(queue, cluster_queue, False, (KUEUE_PENDING, f"waiting for Kueue to queue it in {where}"))
    evicted = _condition(workload, "Evicted")
    if _is_true(evicted):
        assert evicted is not None
        why = f"{evicted.get('reason', 'Evicted')}: {evicted.get('message', '')}".rstrip(": ")
        message = f"evicted by Kueue ({why}); waiting in {where} to run again"
        return KueueState(queue, cluster_queue, False, (KUEUE_EVICTED, message))
    reserved = _condition(workload, "QuotaReserved")
    detail = (reserved or {}).get("message") or "not admitted yet"
    return KueueState(queue, cluster_queue, False, (KUEUE_PENDING, f"waiting in Kueue's {where}: {detail}"))
