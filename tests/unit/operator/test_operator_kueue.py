"""Which jobs go to Kueue, and a job's status from Kueue's Workload of its runner Job."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubescribe.api.v1alpha1 import KUEUE_QUEUE_LABEL
from kubescribe.operator import kueue
from kubescribe.operator.status import compute_status

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
OUTPUTS = {"txt": "s3://transcripts/team-a/talk/talk.txt"}
PENDING_MESSAGE = (
    "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor gpu-a100, "
    "1 more needed"
)


def tj(labels: dict[str, str] | None = None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "metadata": {"name": "talk", "namespace": "team-a", "uid": "tj-uid", "generation": 1, "labels": labels or {}},
        "spec": {"source": {"s3": {"bucket": "audio", "key": "talk.wav"}}, "resources": {"gpu": 1}},
    }
    if status is not None:
        resource["status"] = status
    return resource


def runner_job(*, suspend: bool, conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "transcribe-talk", "namespace": "team-a", "uid": "job-uid"},
        "spec": {"suspend": suspend},
        "status": {"conditions": conditions or []},
    }


def condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def workload(*conditions: dict[str, Any], cluster_queue: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": list(conditions)}
    if cluster_queue:
        status["admission"] = {"clusterQueue": cluster_queue}
    return {
        "metadata": {
            "name": "job-transcribe-talk-1a2b3",
            "namespace": "team-a",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "transcribe-talk", "uid": "job-uid"}],
        },
        "status": status,
    }


PENDING = workload(condition("QuotaReserved", "False", "Pending", PENDING_MESSAGE))
ADMITTED = workload(
    condition("QuotaReserved", "True", "QuotaReserved", "Quota reserved in ClusterQueue team-gpus"),
    condition("Admitted", "True", "Admitted", "The workload is admitted"),
    cluster_queue="team-gpus",
)
EVICTED = workload(
    condition("QuotaReserved", "False", "Pending", "Preempted to accommodate a higher priority workload"),
    condition("Evicted", "True", "Preempted", "Preempted to accommodate a workload (UID: u2) due to prioritization"),
    condition("Admitted", "False", "NoReservation", "The workload has no reservation"),
)


def status_of(tj_: dict[str, Any], job: dict[str, Any] | None, found: dict[str, Any] | None) -> dict[str, Any]:
    state = kueue.kueue_state("gpus", "team-gpus", found)
    return compute_status(
        tj_, job, [], admitted=False, queue_position=None, now=NOW, expected_outputs=OUTPUTS, kueue=state
    )


def admitted_condition(status: dict[str, Any]) -> dict[str, Any]:
    [found] = [c for c in status["conditions"] if c["type"] == "Admitted"]
    return found


def test_a_labelled_job_goes_to_its_local_queue() -> None:
    assert kueue.local_queue(tj({KUEUE_QUEUE_LABEL: "gpus"}), set()) == "gpus"


def test_an_unlabelled_job_goes_to_its_namespaces_default_local_queue_as_kueue_would_put_its_job() -> None:
    assert kueue.local_queue(tj(), {"team-a"}) == "default"
    assert kueue.local_queue(tj(), {"team-b"}) is None


def test_the_runner_job_carries_the_workload_priority_class_the_job_names() -> None:
    labelled = tj({KUEUE_QUEUE_LABEL: "gpus", kueue.PRIORITY_CLASS_LABEL: "interactive", "team": "a"})
    assert kueue.runner_job_labels(labelled, "gpus") == {
        KUEUE_QUEUE_LABEL: "gpus",
        kueue.PRIORITY_CLASS_LABEL: "interactive",
    }
    assert kueue.runner_job_labels(tj(), "default") == {KUEUE_QUEUE_LABEL: "default"}


def test_workloads_are_found_by_the_job_that_owns_them() -> None:
    other = {"metadata": {"name": "w", "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "uid": "job-uid"}]}}
    assert kueue.workloads_by_owner([PENDING, other]) == {"job-uid": PENDING}


def test_a_job_waiting_in_kueue_is_queued_with_what_is_short() -> None:
    status = status_of(tj(), runner_job(suspend=True), PENDING)
    assert status["phase"] == "Queued"
    assert status["reason"] == kueue.KUEUE_PENDING
    assert "LocalQueue gpus (ClusterQueue team-gpus)" in status["message"]
    assert "insufficient unused quota for nvidia.com/gpu" in status["message"]
    assert status["queuePosition"] is None
    assert admitted_condition(status)["status"] == "False"


def test_a_job_is_queued_in_kueue_before_its_runner_job_and_workload_exist() -> None:
    status = status_of(tj(), None, None)
    assert (status["phase"], status["reason"]) == ("Queued", kueue.KUEUE_PENDING)


def test_a_job_kueue_admitted_says_which_cluster_queue_admitted_it() -> None:
    status = status_of(tj(), runner_job(suspend=True), ADMITTED)
    assert (status["phase"], status["reason"]) == ("Pending", kueue.KUEUE_ADMITTED)
    condition_ = admitted_condition(status)
    assert condition_["status"] == "True"
    assert condition_["reason"] == kueue.KUEUE_ADMITTED
    assert "ClusterQueue team-gpus" in condition_["message"]


def test_a_job_kueue_started_runs_as_any_other() -> None:
    status = status_of(tj(), runner_job(suspend=False), ADMITTED)
    assert (status["phase"], status["reason"]) == ("Pending", "JobCreated")
    assert admitted_condition(status)["status"] == "True"


def test_a_preempted_job_waits_again_and_is_not_failed() -> None:
    running = status_of(tj(), runner_job(suspend=False), ADMITTED)
    evicted_job = runner_job(suspend=True, conditions=[condition("Suspended", "True", "JobSuspended", "suspended")])
    status = status_of(tj(status=running), evicted_job, EVICTED)
    assert status["phase"] == "Queued"
    assert status["reason"] == kueue.KUEUE_EVICTED
    assert "Preempted to accommodate a workload" in status["message"]
    assert admitted_condition(status)["status"] == "False"
    assert not any(c["status"] == "True" for c in status["conditions"] if c["type"] == "Failed")


def test_a_finished_job_stays_finished_whatever_kueue_says_after() -> None:
    complete = [condition("Complete", "True", "CompletionsReached", "done")]
    status = status_of(tj(), runner_job(suspend=False, conditions=complete), PENDING)
    assert status["phase"] == "Succeeded"
