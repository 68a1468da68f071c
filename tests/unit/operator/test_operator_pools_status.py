from datetime import UTC, datetime, timedelta
from typing import Any

from kubescribe.api.timestamps import format_timestamp
from kubescribe.contract import EXIT_BAD_INPUT, EXIT_FAILED
from kubescribe.operator.status import (
    WORKER_LOST,
    PooledAttempts,
    compute_pooled_status,
    compute_status,
    pooled_attempts,
)

NOW = datetime(2025, 11, 3, 12, 0, 30, tzinfo=UTC)
OUTPUTS = {"json": "s3://transcripts/team-a/jfk/jfk.json"}


def tj(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "metadata": {"name": "jfk", "namespace": "team-a", "uid": "job-uid", "generation": 1},
        "spec": {"source": {"s3": {"bucket": "audio", "key": "jfk.flac"}}, "resources": {"gpu": 0}, **spec},
    }
    if status is not None:
        resource["status"] = status
    return resource


def assignment(attempt: int = 1, status: dict[str, Any] | None = None, created: datetime = NOW) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"job-uid-{attempt}",
            "namespace": "kubescribe",
            "uid": f"assignment-{attempt}",
            "creationTimestamp": format_timestamp(created),
        },
        "spec": {"pool": "tiny", "attempt": attempt, "job": {"namespace": "team-a", "name": "jfk", "uid": "job-uid"}},
        **({"status": status} if status is not None else {}),
    }


def lease(attempt: int = 1, renewed: datetime = NOW, holder: str = "tiny-workers-abc") -> dict[str, dict[str, Any]]:
    name = f"job-uid-{attempt}"
    return {
        name: {
            "metadata": {"name": name, "ownerReferences": [{"uid": f"assignment-{attempt}"}]},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": 15,
                "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
        }
    }


def failure(exit_code: int = EXIT_FAILED, reason: str = "TranscriptionFailed") -> dict[str, Any]:
    return {"failure": {"reason": reason, "message": "it broke", "exitCode": exit_code}}


def attempts_of(
    assignments: list[dict[str, Any]], leases: dict[str, Any] | None = None, job: dict[str, Any] | None = None
) -> PooledAttempts:
    return pooled_attempts(job or tj(), assignments, leases or {}, NOW)


def status_of(attempts: PooledAttempts, job: dict[str, Any] | None = None) -> dict[str, Any]:
    return compute_pooled_status(job or tj(), attempts, now=NOW, expected_outputs=OUTPUTS)


def test_an_assignment_no_worker_took_yet_is_running_assigned_to_its_pool() -> None:
    attempts = attempts_of([assignment()])
    status = status_of(attempts)
    assert (status["phase"], status["reason"]) == ("Running", "Assigned")
    assert "tiny" in status["message"]
    assert status["pool"] == "tiny"
    assert status["assignment"] == "job-uid-1"
    assert status["jobName"] is None
    assert status["attempts"] == 1
    assert status["startTime"] == format_timestamp(NOW)
    assert {c["type"]: c["status"] for c in status["conditions"]}["Admitted"] == "True"
    assert (attempts.retry, attempts.doomed) == (None, ())


def test_a_claimed_assignment_is_running_with_its_workers_progress() -> None:
    claimed = assignment(status={"worker": "tiny-workers-abc", "progress": {"percent": 40.0}})
    attempts = attempts_of([claimed], lease())
    status = status_of(attempts)
    assert (status["phase"], status["reason"]) == ("Running", "WorkerRunning")
    assert "tiny-workers-abc" in status["message"]
    assert status["progress"]["percent"] == 40.0
    assert attempts.next_check == NOW + timedelta(seconds=15)  # when the Lease runs out unless renewed


def test_a_result_makes_the_job_succeed_with_only_its_own_outputs() -> None:
    result = {"language": "en", "outputs": {**OUTPUTS, "txt": "s3://elsewhere/x.txt"}}
    status = status_of(attempts_of([assignment(status={"result": result})], lease()))
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed")
    assert status["result"] == {"language": "en", "outputs": OUTPUTS}
    assert status["completionTime"] == format_timestamp(NOW)


def test_a_retryable_failure_runs_the_job_again_as_a_new_attempt() -> None:
    attempts = attempts_of([assignment(status=failure())])
    assert attempts.retry == 2
    status = status_of(attempts)
    assert (status["phase"], status["reason"]) == ("Running", "Retrying")
    second = attempts_of([assignment(status=failure()), assignment(2)])
    assert (second.phase.reason, second.attempts, second.retry) == ("Assigned", 2, None)


def test_failures_beyond_the_backoff_limit_fail_the_job() -> None:
    failed = [assignment(1, failure()), assignment(2, failure())]
    attempts = attempts_of(failed, job=tj(backoffLimit=1))
    assert attempts.retry is None
    status = status_of(attempts, tj(backoffLimit=1))
    assert (status["phase"], status["reason"], status["message"]) == ("Failed", "TranscriptionFailed", "it broke")


def test_a_failure_not_worth_retrying_fails_the_job_at_once() -> None:
    attempts = attempts_of([assignment(status=failure(EXIT_BAD_INPUT, "BadInput"))])
    assert attempts.retry is None
    assert (attempts.phase.phase, attempts.phase.reason) == ("Failed", "BadInput")


def test_a_lease_not_renewed_loses_the_attempt_which_runs_again_once() -> None:
    stale = lease(renewed=NOW - timedelta(seconds=16))
    attempts = attempts_of([assignment()], stale)
    assert (attempts.phase.phase, attempts.phase.reason) == ("Running", "Retrying")
    assert "tiny-workers-abc" in attempts.phase.message
    assert attempts.retry == 2
    assert attempts.doomed == ("job-uid-1",)
    # Once the next attempt is made, the lost one is deleted; its missing number still counts as a loss.
    both = attempts_of([assignment(1), assignment(2)], stale)
    assert (both.phase.reason, both.retry, both.doomed) == ("Assigned", None, ("job-uid-1",))
    after = attempts_of([assignment(2)])
    assert (after.phase.reason, after.attempts) == ("Assigned", 2)


def test_a_second_lost_worker_fails_the_job() -> None:
    attempts = attempts_of([assignment(2)], lease(2, renewed=NOW - timedelta(seconds=20)))
    assert (attempts.phase.phase, attempts.phase.reason) == ("Failed", WORKER_LOST)
    assert attempts.retry is None
    assert attempts.doomed == ("job-uid-2",)


def test_a_failed_attempt_kept_does_not_count_as_lost() -> None:
    attempts = attempts_of([assignment(1, failure()), assignment(2)], lease(2, renewed=NOW - timedelta(seconds=20)))
    assert (attempts.phase.reason, attempts.retry) == ("Retrying", 3)


def test_a_lease_of_an_earlier_assignment_of_that_name_is_not_this_ones() -> None:
    stale = lease(renewed=NOW - timedelta(seconds=60))
    stale["job-uid-1"]["metadata"]["ownerReferences"] = [{"uid": "an-assignment-deleted-before"}]
    assert attempts_of([assignment()], stale).phase.reason == "Assigned"


def test_the_deadline_counts_from_the_first_assignment_and_ends_the_unfinished_one() -> None:
    started = NOW - timedelta(seconds=61)
    attempts = attempts_of([assignment(created=started)], lease(), tj(activeDeadlineSeconds=60))
    assert (attempts.phase.phase, attempts.phase.reason) == ("Failed", "DeadlineExceeded")
    assert attempts.doomed == ("job-uid-1",)
    running = attempts_of([assignment(created=NOW - timedelta(seconds=10))], job=tj(activeDeadlineSeconds=60))
    assert running.next_check == NOW + timedelta(seconds=50)


def test_a_finished_status_stays_whatever_assignments_are_left() -> None:
    finished = {
        "phase": "Failed",
        "reason": WORKER_LOST,
        "message": "lost twice",
        "completionTime": "2025-11-03T12:00:00Z",
    }
    job = tj(status=finished)
    attempts = attempts_of([assignment(1, failure())], job=job)
    assert attempts.retry is None
    status = status_of(attempts, job)
    assert (status["phase"], status["reason"], status["completionTime"]) == (
        "Failed",
        WORKER_LOST,
        "2025-11-03T12:00:00Z",
    )


def test_a_job_in_a_pod_has_no_pool_in_its_status() -> None:
    status = compute_status(
        tj(status={"pool": "tiny"}), None, [], admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS
    )
    assert (status["pool"], status["assignment"]) == (None, None)


def test_a_job_waiting_for_pool_room_is_queued_with_the_reason() -> None:
    status = compute_status(
        tj(execution="Pooled"),
        None,
        [],
        admitted=False,
        queue_position=None,
        now=NOW,
        expected_outputs=OUTPUTS,
        waiting=("NoPoolCapacity", "waiting for room"),
    )
    assert (status["phase"], status["reason"]) == ("Queued", "NoPoolCapacity")
