from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubescribe.operator.queue import QueueEntry, plan_admission, queue_entry

START = datetime(2025, 11, 3, 12, 0, tzinfo=UTC)


def entry(
    name: str, minute: int = 0, *, namespace: str = "a", priority: int = 0, gpus: int = 1, **state: Any
) -> QueueEntry:
    return QueueEntry(
        namespace=namespace,
        name=name,
        uid=f"uid-{name}",
        priority=priority,
        created=START + timedelta(minutes=minute),
        gpus=gpus,
        **state,
    )


def names(entries: list[QueueEntry]) -> list[str]:
    return [job.name for job in entries]


def test_higher_priority_first_then_earlier_creation() -> None:
    jobs = [entry("late", 2), entry("early", 1), entry("urgent", 3, priority=10), entry("low", 0, priority=-5)]
    plan = plan_admission(jobs, max_running=2, max_gpus_per_namespace=100)
    assert names(plan.admit) == ["urgent", "early"]
    assert plan.positions == {("a", "late"): 1, ("a", "low"): 2}


def test_same_time_and_priority_is_ordered_by_name_then_uid() -> None:
    jobs = [entry("b"), entry("a"), QueueEntry("a", "a", "uid-0", 0, START, 1)]
    plan = plan_admission(jobs, max_running=1, max_gpus_per_namespace=100)
    assert [job.uid for job in plan.admit] == ["uid-0"]
    assert list(plan.positions) == [("a", "a"), ("a", "b")]


def test_admitted_unfinished_jobs_take_running_slots_and_finished_ones_do_not() -> None:
    jobs = [
        entry("running", admitted=True),
        entry("done", admitted=True, finished=True),
        entry("failed-before-admission", finished=True),
        entry("next", 1),
        entry("after", 2),
    ]
    plan = plan_admission(jobs, max_running=2, max_gpus_per_namespace=100)
    assert names(plan.admit) == ["next"]
    assert plan.positions == {("a", "after"): 1}


def test_nothing_is_admitted_when_the_cluster_is_full() -> None:
    jobs = [entry("r1", admitted=True), entry("r2", admitted=True), entry("w1", 1), entry("w2", 2, namespace="b")]
    plan = plan_admission(jobs, max_running=2, max_gpus_per_namespace=100)
    assert plan.admit == []
    assert plan.positions == {("a", "w1"): 1, ("b", "w2"): 2}


def test_namespace_gpu_quota_counts_running_jobs() -> None:
    jobs = [entry("running", gpus=3, admitted=True), entry("one", 1, gpus=1), entry("two", 2, gpus=1)]
    plan = plan_admission(jobs, max_running=10, max_gpus_per_namespace=4)
    assert names(plan.admit) == ["one"]
    assert plan.positions == {("a", "two"): 1}


def test_cpu_jobs_do_not_use_gpu_quota() -> None:
    jobs = [entry("running", gpus=4, admitted=True), entry("cpu", 1, gpus=0)]
    plan = plan_admission(jobs, max_running=10, max_gpus_per_namespace=4)
    assert names(plan.admit) == ["cpu"]


def test_a_job_over_its_namespace_quota_does_not_block_other_namespaces() -> None:
    jobs = [
        entry("running", gpus=3, admitted=True),
        entry("big", 1, gpus=2),
        entry("other-ns", 2, gpus=2, namespace="b"),
    ]
    plan = plan_admission(jobs, max_running=10, max_gpus_per_namespace=4)
    assert names(plan.admit) == ["other-ns"]
    assert plan.positions == {("a", "big"): 1}


def test_a_waiting_job_is_not_overtaken_by_a_later_job_of_its_namespace() -> None:
    jobs = [
        entry("running", gpus=3, admitted=True),
        entry("big", 1, gpus=2),
        entry("small", 2, gpus=1),
        entry("cpu", 3, gpus=0),
    ]
    plan = plan_admission(jobs, max_running=10, max_gpus_per_namespace=4)
    assert plan.admit == []
    assert plan.positions == {("a", "big"): 1, ("a", "small"): 2, ("a", "cpu"): 3}


def test_a_job_larger_than_the_quota_is_rejected_and_blocks_nothing() -> None:
    jobs = [entry("huge", 0, gpus=6), entry("small", 1, gpus=1)]
    plan = plan_admission(jobs, max_running=10, max_gpus_per_namespace=4)
    assert names(plan.admit) == ["small"]
    assert set(plan.rejected) == {("a", "huge")}
    assert "6" in plan.rejected[("a", "huge")]
    assert plan.positions == {}


def test_admissions_in_one_plan_use_up_the_limits() -> None:
    jobs = [entry(f"j{i}", i, gpus=2) for i in range(4)] + [entry("b1", 9, namespace="b", gpus=2)]
    plan = plan_admission(jobs, max_running=3, max_gpus_per_namespace=4)
    assert names(plan.admit) == ["j0", "j1", "b1"]
    assert plan.positions == {("a", "j2"): 1, ("a", "j3"): 2}


def test_queue_entry_from_a_transcription_job() -> None:
    resource = {
        "metadata": {
            "name": "jfk",
            "namespace": "default",
            "uid": "uid-1",
            "creationTimestamp": "2025-11-03T12:00:00Z",
        },
        "spec": {"source": {"url": "https://example.org/a.mp3"}, "priority": 5, "resources": {"gpu": 2}},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Admitted", "status": "True", "reason": "Admitted", "message": "", "lastTransitionTime": "x"}
            ],
        },
    }
    found = queue_entry(resource, None)
    assert found == QueueEntry("default", "jfk", "uid-1", 5, START, 2, admitted=True, finished=False)
    fresh = queue_entry({**resource, "spec": {"source": {"url": "https://example.org/a.mp3"}}, "status": None}, None)
    assert (fresh.gpus, fresh.priority, fresh.admitted, fresh.finished) == (1, 0, False, False)
    done = queue_entry({**resource, "status": {"phase": "Succeeded", "conditions": []}}, None)
    assert done.finished


def runner_job(*true_conditions: str) -> dict[str, Any]:
    return {"status": {"conditions": [{"type": type_, "status": "True"} for type_ in true_conditions]}}


def test_a_job_with_an_unfinished_runner_job_holds_its_slot_whatever_its_status_says() -> None:
    forged = {"phase": "Succeeded", "conditions": []}
    holding = queue_entry(transcription_job("forged", forged), runner_job())
    assert (holding.admitted, holding.finished) == (True, False)
    waiting = queue_entry(transcription_job("waiting", None, created="2025-11-03T12:00:01Z"), None)
    plan = plan_admission([holding, waiting], max_running=1, max_gpus_per_namespace=4)
    assert plan.admit == []
    assert plan.positions == {("default", "waiting"): 1}
    about_to_fail = queue_entry(transcription_job("failing", {"phase": "Failed"}), runner_job("FailureTarget"))
    assert not about_to_fail.finished


@pytest.mark.parametrize("condition", ["Complete", "Failed"])
def test_a_finished_runner_job_frees_the_slot_whatever_the_status_says(condition: str) -> None:
    entry_ = queue_entry(transcription_job("done", {"phase": "Running"}), runner_job(condition))
    assert (entry_.admitted, entry_.finished) == (True, True)


def transcription_job(
    name: str, status: dict[str, Any] | None, created: str = "2025-11-03T12:00:00Z"
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "creationTimestamp": created},
        "spec": {"source": {"url": "https://example.org/a.mp3"}},
        "status": status,
    }
