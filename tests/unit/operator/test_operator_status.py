import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubescribe.api import TranscriptionJobStatus
from kubescribe.operator.status import compute_status, is_finished, merge_patch, transitions

NOW = datetime(2025, 11, 3, 12, 0, 30, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
JOB_NAME = "transcribe-jfk"
OUTPUTS = {"json": "s3://transcripts/default/jfk/jfk.json", "txt": "s3://transcripts/default/jfk/jfk.txt"}


def tj(status: dict[str, Any] | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "apiVersion": "kubescribe.io/v1alpha1",
        "kind": "TranscriptionJob",
        "metadata": {"name": "jfk", "namespace": "default", "uid": "uid-1", "generation": 1},
        "spec": {"source": {"s3": {"bucket": "audio", "key": "jfk.flac"}}},
    }
    if status is not None:
        resource["status"] = status
    return resource


def job(conditions: list[dict[str, Any]] | None = None, **counts: Any) -> dict[str, Any]:
    status = {
        "startTime": "2025-11-03T12:00:01Z",
        "terminating": 0,
        "uncountedTerminatedPods": {},
        "ready": 0,
        **counts,
    }
    if conditions:
        status["conditions"] = conditions
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": JOB_NAME, "namespace": "default", "uid": "job-uid"},
        "spec": {"suspend": False, "backoffLimit": 2},
        "status": status,
    }


def job_condition(type_: str, reason: str, message: str, at: str = "2025-11-03T12:03:00Z") -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": at,
        "lastTransitionTime": at,
    }


def completed_job() -> dict[str, Any]:
    message = "Reached expected number of succeeded pods"
    return job(
        [
            job_condition("SuccessCriteriaMet", "CompletionsReached", message),
            job_condition("Complete", "CompletionsReached", message),
        ],
        succeeded=1,
        completionTime="2025-11-03T12:03:00Z",
    )


def failed_job(reason: str, message: str, **counts: Any) -> dict[str, Any]:
    return job(
        [
            job_condition("FailureTarget", reason, message, "2025-11-03T12:02:59Z"),
            job_condition("Failed", reason, message, "2025-11-03T12:03:00Z"),
        ],
        **counts,
    )


def pod(suffix: str, phase: str, state: dict[str, Any], created: str = "2025-11-03T12:00:01Z") -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": created}],
        "containerStatuses": [
            {
                "name": "runner",
                "image": "kubescribe:latest",
                "imageID": "",
                "ready": "running" in state,
                "restartCount": 0,
                "started": "running" in state,
                "state": state,
            }
        ],
    }
    if phase != "Pending":
        status["startTime"] = created
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{JOB_NAME}-{suffix}",
            "namespace": "default",
            "creationTimestamp": created,
            "labels": {"batch.kubernetes.io/job-name": JOB_NAME, "kubescribe.io/job": "jfk"},
        },
        "status": status,
    }


def running_pod(suffix: str = "x7k2p", created: str = "2025-11-03T12:00:01Z") -> dict[str, Any]:
    return pod(suffix, "Running", {"running": {"startedAt": "2025-11-03T12:00:05Z"}}, created)


def terminated_pod(
    suffix: str, exit_code: int, message: str | None = None, created: str = "2025-11-03T12:00:01Z"
) -> dict[str, Any]:
    terminated: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "startedAt": "2025-11-03T12:00:05Z",
        "finishedAt": "2025-11-03T12:02:58Z",
        "containerID": "containerd://abc",
    }
    if message is not None:
        terminated["message"] = message
    return pod(suffix, "Succeeded" if exit_code == 0 else "Failed", {"terminated": terminated}, created)


def unschedulable_pod() -> dict[str, Any]:
    pending = pod("q9w8e", "Pending", {"waiting": {"reason": "ContainerCreating"}})
    pending["status"]["conditions"] = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            "lastTransitionTime": "2025-11-03T12:00:01Z",
        }
    ]
    del pending["status"]["containerStatuses"]
    return pending


def report(reason: str, message: str) -> str:
    return json.dumps({"reason": reason, "message": message})


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {condition["type"]: condition for condition in status["conditions"]}


def truths(status: dict[str, Any]) -> dict[str, str]:
    return {type_: condition["status"] for type_, condition in conditions(status).items()}


def test_new_job_without_a_decision_is_pending() -> None:
    status = compute_status(tj(), None, [], admitted=False, queue_position=None, now=NOW, expected_outputs=OUTPUTS)
    assert status["phase"] == "Pending"
    assert truths(status) == {"Admitted": "False", "Running": "False", "Complete": "False", "Failed": "False"}
    assert status["attempts"] == 0
    assert status["startTime"] is None
    assert status["jobName"] is None
    TranscriptionJobStatus.model_validate(status)


def test_waiting_job_is_queued_with_its_position() -> None:
    status = compute_status(tj(), None, [], admitted=False, queue_position=3, now=NOW, expected_outputs=OUTPUTS)
    assert status["phase"] == "Queued"
    assert status["queuePosition"] == 3
    assert "3" in status["message"]
    assert conditions(status)["Admitted"]["status"] == "False"
    assert conditions(status)["Admitted"]["reason"] == "Queued"


def test_draining_a_long_queue_rewrites_a_fraction_of_the_statuses_exact_positions_would() -> None:
    """500 queued jobs admitted four at a time: every admission moves everyone up."""
    statuses: dict[int, dict[str, Any]] = {}
    rewrites = exact_rewrites = 0
    for admitted in range(0, 500, 4):
        for job in range(admitted, 500):
            position = job - admitted + 1
            current = statuses.get(job)
            status = compute_status(
                tj(current), None, [], admitted=False, queue_position=position, now=NOW, expected_outputs=OUTPUTS
            )
            rewrites += bool(current is None or merge_patch(current, status))
            exact_rewrites += 1
            statuses[job] = {**(current or {}), **status}
            shown = status["queuePosition"]
            assert status["message"] == f"waiting for admission at position {shown}"
            assert shown == position if position <= 10 else abs(shown - position) * 10 < shown
    assert rewrites < exact_rewrites / 2


def test_admitted_job_without_its_job_yet_is_pending_and_admitted() -> None:
    queued = compute_status(tj(), None, [], admitted=False, queue_position=1, now=NOW, expected_outputs=OUTPUTS)
    status = compute_status(
        tj(queued), None, [], admitted=True, queue_position=None, now=LATER, expected_outputs=OUTPUTS
    )
    assert status["phase"] == "Pending"
    assert status["queuePosition"] is None
    admitted = conditions(status)["Admitted"]
    assert (admitted["status"], admitted["reason"]) == ("True", "Admitted")
    assert admitted["lastTransitionTime"] == "2025-11-03T12:05:30Z"
    assert admitted["observedGeneration"] == 1


def test_admission_recorded_in_the_status_is_kept() -> None:
    admitted = compute_status(tj(), None, [], admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS)
    again = compute_status(
        tj(admitted), None, [], admitted=False, queue_position=None, now=LATER, expected_outputs=OUTPUTS
    )
    assert again == admitted


def test_job_with_a_running_pod_is_running() -> None:
    status = compute_status(
        tj(), job(active=1), [running_pod()], admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS
    )
    assert status["phase"] == "Running"
    assert status["reason"] == "PodRunning"
    assert truths(status) == {"Admitted": "True", "Running": "True", "Complete": "False", "Failed": "False"}
    assert status["attempts"] == 1
    assert status["startTime"] == "2025-11-03T12:00:01Z"
    assert status["jobName"] == JOB_NAME
    assert status["completionTime"] is None


def test_unschedulable_pod_is_running_phase_with_the_schedulers_message() -> None:
    status = compute_status(
        tj(),
        job(active=1),
        [unschedulable_pod()],
        admitted=True,
        queue_position=None,
        now=NOW,
        expected_outputs=OUTPUTS,
    )
    assert status["phase"] == "Running"
    assert status["reason"] == "PodPending"
    assert "Insufficient nvidia.com/gpu" in status["message"]


def test_job_just_created_without_pods_is_pending() -> None:
    status = compute_status(tj(), job(), [], admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS)
    assert status["phase"] == "Pending"
    assert status["reason"] == "JobCreated"
    assert conditions(status)["Admitted"]["status"] == "True"


def test_complete_job_succeeds_and_keeps_the_runners_result_and_progress() -> None:
    runner_fields = {
        "progress": {"percent": 99.9, "processedSeconds": 11.0},
        "result": {"language": "en", "outputs": {"txt": "s3://transcripts/default/jfk/jfk.txt"}},
    }
    running = compute_status(
        tj(), job(active=1), [running_pod()], admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS
    )
    current = tj({**running, **runner_fields})
    pods = [terminated_pod("x7k2p", 0)]
    status = compute_status(
        current, completed_job(), pods, admitted=True, queue_position=None, now=LATER, expected_outputs=OUTPUTS
    )
    assert status["phase"] == "Succeeded"
    assert truths(status) == {"Admitted": "True", "Running": "False", "Complete": "True", "Failed": "False"}
    assert status["completionTime"] == "2025-11-03T12:03:00Z"
    assert status["progress"] == runner_fields["progress"]
    assert status["result"] == runner_fields["result"]
    assert status["attempts"] == 1
    assert is_finished(status)
    TranscriptionJobStatus.model_validate(status)


def test_a_result_that_never_reached_the_status_is_taken_from_the_runners_termination_message() -> None:
    result = {"language": "en", "durationSeconds": 11.0, "outputs": OUTPUTS}
    running = compute_status(
        tj(), job(active=1), [running_pod()], admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS
    )
    pods = [terminated_pod("x7k2p", 0, json.dumps({"result": result}))]
    status = compute_status(
        tj(running), completed_job(), pods, admitted=True, queue_position=None, now=LATER, expected_outputs=OUTPUTS
    )
    assert (status["phase"], status["result"]) == ("Succeeded", result)
    forged = {"result": {"outputs": {"txt": "s3://transcripts/other-team/secret.txt"}}}
    pods = [terminated_pod("x7k2p", 0, json.dumps(forged))]
    status = compute_status(
        tj(running), completed_job(), pods, admitted=True, queue_position=None, now=LATER, expected_outputs=OUTPUTS
    )
    assert status["result"] == {"outputs": {}}


def test_failure_policy_failure_takes_the_runners_reason_and_message() -> None:
    pods = [terminated_pod("x7k2p", 2, report("BadAudio", "not an audio file: jfk.flac"))]
    policy_message = (
        "Container runner for pod default/transcribe-jfk-x7k2p failed with exit code 2 matching FailJob rule at index 0"
    )
    status = compute_status(
        tj(),
        failed_job("PodFailurePolicy", policy_message, failed=1),
        pods,
        admitted=True,
        queue_position=None,
        now=NOW,
        expected_outputs=OUTPUTS,
    )
    assert status["phase"] == "Failed"
    assert (status["reason"], status["message"]) == ("BadAudio", "not an audio file: jfk.flac")
    failed = conditions(status)["Failed"]
    assert (failed["status"], failed["reason"]) == ("True", "BadAudio")
    assert status["completionTime"] == "2025-11-03T12:03:00Z"
    assert status["attempts"] == 1
    TranscriptionJobStatus.model_validate(status)


def test_not_retried_exit_fails_before_the_job_says_so() -> None:
    pods = [terminated_pod("x7k2p", 3, report("SourceNotFound", "s3://audio/jfk.flac does not exist"))]
    status = compute_status(
        tj(), job(active=1), pods, admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS
    )
    assert status["phase"] == "Failed"
    assert status["reason"] == "SourceNotFound"
    assert status["completionTime"] == "2025-11-03T12:02:58Z"


def test_policy_failure_without_a_termination_message_maps_the_exit_code() -> None:
    pods = [terminated_pod("x7k2p", 2)]
    status = compute_status(
        tj(),
        failed_job("PodFailurePolicy", "exit code 2", failed=1),
        pods,
        admitted=True,
        queue_position=None,
        now=NOW,
        expected_outputs=OUTPUTS,
    )
    assert status["reason"] == "BadInput"
    assert "code 2" in status["message"]


def test_log_tail_is_the_message_when_the_runner_wrote_no_report() -> None:
    pods = [terminated_pod("x7k2p", 1, "Traceback (most recent call last):\nMemoryError\n")]
    backoff = failed_job("BackoffLimitExceeded", "Job has reached the specified backoff limit", failed=3)
    status = compute_status(tj(), backoff, pods, admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS)
    assert status["reason"] == "RunnerFailed"
    assert status["message"].endswith("MemoryError")
    assert status["attempts"] == 3


def test_backoff_failure_uses_the_latest_failed_pods_report() -> None:
    pods = [
        terminated_pod("bbbbb", 1, report("TranscriptionFailed", "second"), created="2025-11-03T12:01:00Z"),
        terminated_pod("aaaaa", 1, report("TranscriptionFailed", "first"), created="2025-11-03T12:00:01Z"),
    ]
    backoff = failed_job("BackoffLimitExceeded", "Job has reached the specified backoff limit", failed=2)
    status = compute_status(tj(), backoff, pods, admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS)
    assert (status["reason"], status["message"]) == ("TranscriptionFailed", "second")


def test_backoff_failure_without_pods_takes_the_jobs_reason() -> None:
    backoff = failed_job("BackoffLimitExceeded", "Job has reached the specified backoff limit", failed=3)
    status = compute_status(tj(), backoff, [], admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS)
    assert (status["reason"], status["message"]) == (
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    )
    assert status["attempts"] == 3


def test_deadline_failure_is_reported_as_the_deadline_not_the_killed_runner() -> None:
    killed = terminated_pod("x7k2p", 143, report("Cancelled", "terminated"))
    deadline = failed_job("DeadlineExceeded", "Job was active longer than specified deadline", failed=1)
    status = compute_status(
        tj(), deadline, [killed], admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS
    )
    assert (status["phase"], status["reason"]) == ("Failed", "DeadlineExceeded")
    assert status["message"] == "Job was active longer than specified deadline"


def test_failure_target_alone_already_fails_the_job() -> None:
    target = job(
        [job_condition("FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline")],
        active=1,
    )
    status = compute_status(
        tj(), target, [running_pod()], admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS
    )
    assert status["phase"] == "Failed"
    assert status["completionTime"] == "2025-11-03T12:03:00Z"


def test_retried_failure_keeps_running_and_counts_attempts() -> None:
    pods = [
        terminated_pod("aaaaa", 1, report("TranscriptionFailed", "CUDA error"), created="2025-11-03T12:00:01Z"),
        running_pod("bbbbb", created="2025-11-03T12:01:00Z"),
    ]
    status = compute_status(
        tj(), job(active=1, failed=1), pods, admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS
    )
    assert status["phase"] == "Running"
    assert status["attempts"] == 2
    assert status["startTime"] == "2025-11-03T12:00:01Z"

    between = compute_status(
        tj(), job(failed=1), pods[:1], admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS
    )
    assert (between["phase"], between["reason"]) == ("Running", "Retrying")
    assert "CUDA error" in between["message"]


def test_evicted_pod_is_not_taken_as_the_failure() -> None:
    evicted = terminated_pod("aaaaa", 3, report("SourceNotFound", "should be ignored"))
    evicted["status"]["conditions"].append(
        {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
    )
    replacement = running_pod("bbbbb", created="2025-11-03T12:01:00Z")
    status = compute_status(
        tj(),
        job(active=1),
        [evicted, replacement],
        admitted=True,
        queue_position=None,
        now=NOW,
        expected_outputs=OUTPUTS,
    )
    assert status["phase"] == "Running"
    assert status["attempts"] == 2


def test_finished_status_without_a_job_is_final() -> None:
    for phase in ("Succeeded", "Failed", "Cancelled"):
        current = {"phase": phase, "reason": "UserCancelled", "message": "deleted", "conditions": []}
        status = compute_status(
            tj(current), None, [], admitted=False, queue_position=2, now=NOW, expected_outputs=OUTPUTS
        )
        assert {key: value for key, value in status.items() if value is not None} == current
        assert is_finished(status)
    assert not is_finished({"phase": "Running"})
    assert not is_finished(None)


def test_job_that_may_never_run_fails_with_the_reason() -> None:
    rejection = ("StorageForbidden", "storage policy: namespace team-a may not read s3://audio/team-b/x.wav")
    status = compute_status(
        tj(), None, [], admitted=False, queue_position=None, now=NOW, expected_outputs=OUTPUTS, rejection=rejection
    )
    assert (status["phase"], status["reason"], status["message"]) == ("Failed", *rejection)
    assert status["completionTime"] == "2025-11-03T12:00:30Z"
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "StorageForbidden")


def test_an_admitted_job_whose_runner_the_api_server_refuses_fails_admitted() -> None:
    rejection = ("InvalidSpec", "the API server refused the runner's Job: spec.template.spec.tolerations[0]...")
    status = compute_status(
        tj(), None, [], admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS, rejection=rejection
    )
    assert (status["phase"], status["reason"], status["message"]) == ("Failed", *rejection)
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Admitted"] == "True" and conditions["Failed"] == "True"


def test_last_transition_time_moves_only_when_a_condition_changes() -> None:
    first = compute_status(
        tj(), job(active=1), [running_pod()], admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS
    )
    same = compute_status(
        tj(first),
        job(active=1),
        [running_pod()],
        admitted=True,
        queue_position=None,
        now=LATER,
        expected_outputs=OUTPUTS,
    )
    assert same == first

    pods = [terminated_pod("x7k2p", 0)]
    done = compute_status(
        tj(first), completed_job(), pods, admitted=True, queue_position=None, now=LATER, expected_outputs=OUTPUTS
    )
    before, after = conditions(first), conditions(done)
    assert after["Admitted"]["lastTransitionTime"] == before["Admitted"]["lastTransitionTime"]
    assert after["Failed"]["lastTransitionTime"] == before["Failed"]["lastTransitionTime"]
    for changed in ("Running", "Complete"):
        assert after[changed]["lastTransitionTime"] == "2025-11-03T12:05:30Z" != before[changed]["lastTransitionTime"]


def test_foreign_conditions_are_kept() -> None:
    other = {"type": "Notified", "status": "True", "reason": "Sent", "message": "", "lastTransitionTime": "x"}
    status = compute_status(
        tj({"conditions": [other]}), None, [], admitted=False, queue_position=1, now=NOW, expected_outputs=OUTPUTS
    )
    assert conditions(status)["Notified"] == other


@pytest.mark.parametrize(
    ("old_phase", "new_phase", "expected_type"),
    [(None, "Queued", "Normal"), ("Running", "Succeeded", "Normal"), ("Running", "Failed", "Warning")],
)
def test_phase_changes_give_one_event(old_phase: str | None, new_phase: str, expected_type: str) -> None:
    old = {"phase": old_phase} if old_phase else None
    new = {"phase": new_phase, "reason": "Why", "message": "details"}
    assert transitions(old, new) == [(expected_type, "Why", "details")]


def test_no_event_without_a_change_and_a_warning_on_retry() -> None:
    running = {"phase": "Running", "reason": "PodRunning", "message": "m", "attempts": 1}
    assert transitions(running, running) == []
    assert transitions({**running, "attempts": 0}, running) == []
    [(kind, reason, message)] = transitions(running, {**running, "attempts": 2})
    assert (kind, reason) == ("Warning", "Retrying")
    assert "2" in message


def running_status() -> dict[str, Any]:
    return compute_status(
        tj(), job(active=1), [running_pod()], admitted=True, queue_position=None, now=NOW, expected_outputs=OUTPUTS
    )


@pytest.mark.parametrize("forged_phase", ["Succeeded", "Failed", "Cancelled"])
def test_a_finished_phase_written_while_the_job_runs_is_undone(forged_phase: str) -> None:
    running = running_status()
    forged = {**running, "phase": forged_phase, "reason": "Forged", "completionTime": "2025-11-03T12:00:40Z"}
    status = compute_status(
        tj(forged),
        job(active=1),
        [running_pod()],
        admitted=True,
        queue_position=None,
        now=LATER,
        expected_outputs=OUTPUTS,
    )
    assert (status["phase"], status["reason"], status["completionTime"]) == ("Running", "PodRunning", None)
    assert status["conditions"] == running["conditions"]


def test_a_finished_status_follows_its_job_while_the_job_exists() -> None:
    done = compute_status(
        tj(running_status()),
        completed_job(),
        [terminated_pod("x7k2p", 0)],
        admitted=True,
        queue_position=None,
        now=LATER,
        expected_outputs=OUTPUTS,
    )
    again = compute_status(
        tj({**done, "phase": "Failed", "reason": "Forged"}),
        completed_job(),
        [terminated_pod("x7k2p", 0)],
        admitted=True,
        queue_position=None,
        now=LATER,
        expected_outputs=OUTPUTS,
    )
    assert again == done


def test_only_the_jobs_own_transcripts_are_kept_in_the_result() -> None:
    forged = {
        **running_status(),
        "result": {
            "language": "en",
            "outputs": {"txt": OUTPUTS["txt"], "json": "s3://transcripts/other/secret/secret.json", "srt": "s3://x/y"},
        },
    }
    status = compute_status(
        tj(forged),
        completed_job(),
        [terminated_pod("x7k2p", 0)],
        admitted=True,
        queue_position=None,
        now=LATER,
        expected_outputs=OUTPUTS,
    )
    assert status["result"] == {"language": "en", "outputs": {"txt": OUTPUTS["txt"]}}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("progress", {"percent": 250}),
        ("progress", {"percent": -1}),
        ("progress", {"processedSeconds": 99, "durationSeconds": 10}),
        ("progress", {"etaSeconds": -5}),
        ("progress", "halfway"),
        ("result", {"languageProbability": 7}),
        ("result", {"outputs": {"txt": 5}}),
        ("result", {"unknown": True}),
    ],
)
def test_runner_reports_out_of_bounds_are_dropped(field: str, value: Any) -> None:
    for job_now, finished in ((job(active=1), False), (None, True)):
        current = {**running_status(), field: value}
        if finished:
            current["phase"] = "Succeeded"
        status = compute_status(
            tj(current),
            job_now,
            [running_pod()],
            admitted=True,
            queue_position=None,
            now=LATER,
            expected_outputs=OUTPUTS,
        )
        assert status[field] is None


def test_merge_patch_removes_what_the_wanted_objects_lack_and_leaves_other_fields() -> None:
    current = {
        "phase": "Running",
        "webhook": {"delivered": False},
        "result": {"language": "en", "outputs": {"txt": "s3://a/b.txt", "json": "s3://other/x.json"}},
        "progress": {"percent": 50},
    }
    wanted = {"phase": "Running", "result": {"language": "en", "outputs": {"txt": "s3://a/b.txt"}}, "progress": None}
    assert merge_patch(current, wanted) == {"result": {"outputs": {"json": None}}, "progress": None}
    assert merge_patch(wanted, wanted) == {}
    assert merge_patch({}, {"queuePosition": None, "phase": "Queued"}) == {"phase": "Queued"}
