"""The pure parts of a pool's worker: which assignments it claims, its Leases, its failure reports, its drain."""

from __future__ import annotations

import datetime
import threading
import urllib.request
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubescribe.api.pools import LEASE_SECONDS
from kubescribe.contract import ENV_STORE_GRANTS, EXIT_BAD_INPUT, EXIT_FAILED, Grant, StoreGrants
from kubescribe.runner.assignments import attempt_secrets, candidates, check_model, failure_status, log_fields
from kubescribe.runner.errors import MAX_MESSAGE_CHARS, Abandoned, RunnerFailure, unexpected_failure
from kubescribe.runner.health import STALL_SECONDS, Lifecycle, serve_health
from kubescribe.runner.leases import Lease, Leases, lease_body, micro_time
from kubescribe.runner.worker import Attempt, Secrets, Settings, Worker
from localcluster.cluster import free_port
from tests.integration.conftest import wait_for

NOW = datetime.datetime(2030, 5, 6, 7, 8, 9, 120000, tzinfo=datetime.UTC)
SIGNED = "https://store.example/audio/a.wav?X-Amz-Credential=AKID&X-Amz-Signature=abc123def456"


def _assignment(name: str, created: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": created},
        "spec": {"job": {"namespace": "team-a", "name": f"job-{name}"}, "attempt": 2, "environment": {}},
        "status": status,
    }


def test_claims_open_assignments_oldest_first() -> None:
    assignments = [
        _assignment("late", "2030-01-01T00:00:03Z"),
        _assignment("done", "2030-01-01T00:00:00Z", {"result": {"outputs": {}}}),
        _assignment("failed", "2030-01-01T00:00:00Z", {"failure": {"reason": "BadAudio"}}),
        _assignment("early", "2030-01-01T00:00:01Z", {"progress": {"percent": 0}}),
        _assignment("mine", "2030-01-01T00:00:00Z"),
        _assignment("middle", "2030-01-01T00:00:02Z"),
    ]
    names = [a["metadata"]["name"] for a in candidates(assignments, passed={"mine"})]
    assert names == ["early", "middle", "late"]


def test_an_attempts_log_lines_name_its_job() -> None:
    assert log_fields(_assignment("a", "")) == {
        "assignment": "a",
        "job": "job-a",
        "jobNamespace": "team-a",
        "attempt": 2,
    }


def _grants_environment() -> dict[str, str]:
    grants = StoreGrants(
        expires="2030-01-01T00:00:00Z",
        source=Grant(url=SIGNED, uri="s3://audio/a.wav"),
        outputs={"txt": Grant(url=SIGNED.replace("a.wav", "a.txt") + "1", uri="s3://out/a.txt")},
    )
    return {ENV_STORE_GRANTS: grants.model_dump_json(), "AWS_SECRET_ACCESS_KEY": "a-secret-key"}


def test_an_attempts_secrets_are_its_urls_their_signatures_and_any_credentials() -> None:
    secrets = attempt_secrets(_grants_environment())
    assert SIGNED in secrets
    assert "X-Amz-Credential=AKID&X-Amz-Signature=abc123def456" in secrets
    assert "X-Amz-Credential=AKID&X-Amz-Signature=abc123def4561" in secrets
    assert "a-secret-key" in secrets
    assert "" not in secrets
    assert attempt_secrets({ENV_STORE_GRANTS: "not json"}) == []


def test_a_failure_is_reported_as_a_runner_pods_termination_message_would_say_it() -> None:
    secrets = attempt_secrets(_grants_environment())
    failure = RunnerFailure(EXIT_BAD_INPUT, "SourceNotFound", f"cannot read {SIGNED}: 404 " + "x" * 5000)
    reported = failure_status(failure, secrets)["status"]["failure"]
    assert reported["reason"] == "SourceNotFound"
    assert reported["exitCode"] == EXIT_BAD_INPUT
    assert reported["message"].startswith("cannot read ***: 404 ")
    assert len(reported["message"]) == MAX_MESSAGE_CHARS
    assert "abc123def456" not in str(reported)


def test_an_unexpected_error_fails_as_a_runner_error() -> None:
    failure = unexpected_failure(ValueError("no"))
    assert (failure.exit_code, failure.reason, failure.message) == (EXIT_FAILED, "RunnerError", "ValueError: no")


def test_a_job_of_another_model_fails() -> None:
    check_model("tiny.en", "tiny.en")
    check_model("s3://models/large-v3", "s3://models/large-v3/")
    with pytest.raises(RunnerFailure) as raised:
        check_model("base", "tiny.en")
    assert (raised.value.exit_code, raised.value.reason) == (EXIT_BAD_INPUT, "ModelMismatch")
    assert "base" in raised.value.message


def test_a_lease_is_held_by_the_worker_and_owned_by_its_assignment() -> None:
    lease = Lease("a", "uid-a", NOW)
    body = lease_body(lease, "pool-ns", "worker-1", NOW + datetime.timedelta(seconds=5))
    assert body["metadata"] == {
        "name": "a",
        "namespace": "pool-ns",
        "ownerReferences": [
            {"apiVersion": "kubescribe.io/v1alpha1", "kind": "RunnerAssignment", "name": "a", "uid": "uid-a"}
        ],
    }
    assert body["spec"] == {
        "holderIdentity": "worker-1",
        "leaseDurationSeconds": LEASE_SECONDS,
        "acquireTime": "2030-05-06T07:08:09.120000Z",
        "renewTime": "2030-05-06T07:08:14.120000Z",
    }


def test_micro_time_always_has_six_digits_in_utc() -> None:
    whole = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert micro_time(whole) == "2030-01-02T01:04:05.000000Z"


class FakeLeaseApi:
    """The Lease calls of CoordinationV1Api, on one Lease."""

    def __init__(self, holder: str | None = None, conflicts: int = 0) -> None:
        self.lease: dict[str, Any] | None = None
        if holder:
            self.lease = {"spec": {"holderIdentity": holder}, "metadata": {"resourceVersion": "1"}}
        self.conflicts = conflicts
        self.replaced: list[dict[str, Any]] = []

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any]) -> None:
        if self.lease is not None:
            raise ApiException(status=409)
        self.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}

    def read_namespaced_lease(self, name: str, namespace: str) -> Any:
        if self.lease is None:
            raise ApiException(status=404)
        return _Object(self.lease)

    def replace_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        if self.conflicts:
            self.conflicts -= 1
            raise ApiException(status=409)
        self.replaced.append(body)


class _Object:
    """What the client returns: attributes in snake_case."""

    def __init__(self, lease: dict[str, Any]) -> None:
        self.spec = type("Spec", (), {"holder_identity": lease["spec"]["holderIdentity"]})
        self.metadata = type("Metadata", (), {"resource_version": lease["metadata"]["resourceVersion"]})


def _leases(api: FakeLeaseApi) -> Leases:
    return Leases(api, "pool-ns", "worker-1", now=lambda: NOW)  # type: ignore[arg-type]


def test_a_claim_creates_the_lease_and_yields_to_another_holder() -> None:
    api = FakeLeaseApi()
    lease = _leases(api).claim(_assignment("a", ""))
    assert lease == Lease("a", "uid-a", NOW)
    assert api.lease is not None
    assert api.lease["spec"]["holderIdentity"] == "worker-1"
    assert _leases(FakeLeaseApi(holder="worker-2")).claim(_assignment("a", "")) is None


def test_a_claim_fails_loudly_on_other_errors() -> None:
    class Down(FakeLeaseApi):
        def create_namespaced_lease(self, namespace: str, body: dict[str, Any]) -> None:
            raise ApiException(status=500)

    with pytest.raises(ApiException):
        _leases(Down()).claim(_assignment("a", ""))


def test_a_renewal_keeps_the_lease_only_while_it_is_this_workers() -> None:
    lease = Lease("a", "uid-a", NOW)
    mine = FakeLeaseApi(holder="worker-1")
    assert _leases(mine).renew(lease)
    assert mine.replaced[0]["metadata"]["resourceVersion"] == "1"
    assert mine.replaced[0]["spec"]["holderIdentity"] == "worker-1"
    assert not _leases(FakeLeaseApi(holder="worker-2")).renew(lease)
    assert not _leases(FakeLeaseApi()).renew(lease)


def test_a_renewal_reads_the_lease_again_after_a_conflict() -> None:
    lease = Lease("a", "uid-a", NOW)
    assert _leases(FakeLeaseApi(holder="worker-1", conflicts=1)).renew(lease)
    with pytest.raises(ApiException):
        _leases(FakeLeaseApi(holder="worker-1", conflicts=2)).renew(lease)


class FakeLeases:
    def __init__(self, *answers: bool | Exception) -> None:
        self.answers = list(answers)

    def renew(self, lease: Lease) -> bool:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _attempt(leases: FakeLeases, clock: Clock, patches: list[dict[str, Any]]) -> Attempt:
    return Attempt(_assignment("a", ""), Lease("a", "uid-a", NOW), leases, patches.append, clock)  # type: ignore[arg-type]


def test_an_attempt_outlives_an_unanswered_renewal_within_the_lease_but_not_beyond() -> None:
    clock, patches = Clock(), []
    attempt = _attempt(FakeLeases(True, OSError("timeout"), OSError("timeout")), clock, patches)
    clock.now += 5
    assert attempt.renew()
    clock.now += LEASE_SECONDS - 1
    assert attempt.renew()
    clock.now += 2
    assert not attempt.renew()
    assert attempt.abandoned.is_set()


def test_an_attempt_uploads_only_when_its_lease_was_renewed_just_now() -> None:
    clock, patches = Clock(), []
    attempt = _attempt(FakeLeases(True, OSError("timeout")), clock, patches)
    assert attempt.still_mine()
    assert not attempt.still_mine()
    assert attempt.abandoned.is_set()


def test_an_abandoned_attempt_reports_nothing_more() -> None:
    clock, patches = Clock(), []
    attempt = _attempt(FakeLeases(False), clock, patches)
    attempt.report({"status": {"worker": "worker-1"}})
    assert not attempt.renew()
    with pytest.raises(Abandoned):
        attempt.report({"status": {"progress": {"percent": 50}}})
    assert patches == [{"status": {"worker": "worker-1"}}]
    assert not attempt.still_mine()


def test_a_worker_is_ready_once_loaded_until_it_drains_and_done_once_nothing_runs() -> None:
    clock = Clock()
    lifecycle = Lifecycle(clock)
    assert not lifecycle.ready()
    assert lifecycle.alive()
    lifecycle.loaded = True
    assert lifecycle.ready()
    assert not lifecycle.done(running=0)
    lifecycle.draining = True
    assert not lifecycle.ready()
    assert not lifecycle.done(running=2)
    assert lifecycle.done(running=0)


def test_a_worker_whose_loop_stalls_is_not_alive() -> None:
    clock = Clock()
    lifecycle = Lifecycle(clock)
    lifecycle.beat()
    clock.now += STALL_SECONDS - 1
    assert lifecycle.alive()
    clock.now += 2
    assert not lifecycle.alive()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_the_health_endpoints_answer_from_the_lifecycle() -> None:
    port = free_port()
    lifecycle = Lifecycle()
    server = serve_health(port, lifecycle)
    try:
        base = f"http://127.0.0.1:{port}"
        assert (_status(f"{base}/readyz"), _status(f"{base}/healthz")) == (503, 200)
        lifecycle.loaded = True
        assert _status(f"{base}/readyz") == 200
        lifecycle.draining = True
        assert _status(f"{base}/readyz") == 503
        assert _status(f"{base}/other") == 404
    finally:
        server.shutdown()


def test_settings_from_the_environment() -> None:
    env = {
        "KUBESCRIBE_POOL": "tiny",
        "KUBESCRIBE_POOL_NAMESPACE": "pools",
        "KUBESCRIBE_POOL_MODEL": "tiny.en",
        "KUBESCRIBE_POOL_CONCURRENCY": "4",
        "KUBESCRIBE_WORKER": "tiny-abc",
        "KUBESCRIBE_MODEL_CACHE": "/models",
        "KUBESCRIBE_WORKER_PORT": "9000",
    }
    settings = Settings.from_env(env)
    assert (settings.pool, settings.namespace, settings.model) == ("tiny", "pools", "tiny.en")
    assert (settings.concurrency, settings.worker, str(settings.model_cache), settings.port) == (
        4,
        "tiny-abc",
        "/models",
        9000,
    )
    with pytest.raises(ValueError, match="KUBESCRIBE_WORKER must be set"):
        Settings.from_env({**env, "KUBESCRIBE_WORKER": ""})
    with pytest.raises(ValueError, match="at least 1"):
        Settings.from_env({**env, "KUBESCRIBE_POOL_CONCURRENCY": "0"})
    assert (settings.grants, settings.node_model_cache) == (None, None)


def test_the_settings_of_a_worker_of_an_s3_model_hold_its_urls_and_never_show_them() -> None:
    grants = StoreGrants(
        expires="2030-01-01T00:00:00Z", model={"model.bin": Grant(url=SIGNED, uri="s3://models/m/model.bin")}
    )
    env = {
        "KUBESCRIBE_POOL": "big",
        "KUBESCRIBE_POOL_NAMESPACE": "pools",
        "KUBESCRIBE_POOL_MODEL": "s3://models/m/",
        "KUBESCRIBE_WORKER": "big-abc",
        "KUBESCRIBE_NODE_MODEL_CACHE": "http://127.0.0.1:8480",
        ENV_STORE_GRANTS: grants.model_dump_json(),
    }
    settings = Settings.from_env(env)
    assert (settings.grants, settings.node_model_cache) == (grants, "http://127.0.0.1:8480")
    with pytest.raises(ValueError, match=f"{ENV_STORE_GRANTS} is not valid") as invalid:
        Settings.from_env({**env, ENV_STORE_GRANTS: env[ENV_STORE_GRANTS].replace("expires", "expiry")})
    assert SIGNED not in str(invalid.value)


class FakeStatusApi:
    """The status patches of CustomObjectsApi, recorded."""

    def __init__(self) -> None:
        self.patches: list[tuple[str, dict[str, Any]]] = []

    def patch_namespaced_custom_object_status(self, *where: str, **options: Any) -> None:
        *_, name, body = where
        self.patches.append((name, body))  # type: ignore[arg-type]


class FakeClaims:
    def __init__(self, taken: set[str]) -> None:
        self.taken = taken
        self.claimed: list[str] = []

    def claim(self, assignment: dict[str, Any]) -> Lease | None:
        name = assignment["metadata"]["name"]
        if name in self.taken:
            return None
        self.taken.add(name)
        self.claimed.append(name)
        return Lease(name, f"uid-{name}", NOW)

    def renew(self, lease: Lease) -> bool:
        return True


def test_the_worker_claims_what_it_has_room_for_and_stops_claiming_when_it_drains() -> None:
    settings = Settings.from_env(
        {
            "KUBESCRIBE_POOL": "tiny",
            "KUBESCRIBE_POOL_NAMESPACE": "pools",
            "KUBESCRIBE_POOL_MODEL": "tiny.en",
            "KUBESCRIBE_WORKER": "tiny-abc",
        }
    )
    lifecycle, claims, api = Lifecycle(), FakeClaims(taken={"b"}), FakeStatusApi()
    lifecycle.loaded = True
    worker = Worker(
        settings=settings,
        whisper=None,  # type: ignore[arg-type]  # the attempts fail before they transcribe
        leases=claims,  # type: ignore[arg-type]
        api=api,  # type: ignore[arg-type]
        lifecycle=lifecycle,
        secrets=Secrets(),
    )
    # Assignments without a spec: each attempt fails at once, as a runner pod with no spec would.
    worker.events.put(("listed", [_assignment(name, f"2030-01-01T00:00:0{n}Z") for n, name in enumerate("abc")]))
    loop = threading.Thread(target=worker.run)
    loop.start()
    wait_for(lambda: len([1 for _, body in api.patches if "failure" in body["status"]]) == 2, 10, "two failures")
    lifecycle.draining = True
    worker.events.put(("changed", _assignment("d", "2030-01-01T00:00:09Z")))
    loop.join(timeout=10)

    assert not loop.is_alive()
    assert claims.claimed == ["a", "c"]
    assert api.patches[0] == ("a", {"status": {"worker": "tiny-abc"}})
    failures = {name: body["status"]["failure"] for name, body in api.patches if "failure" in body["status"]}
    assert failures["c"] == {"reason": "InvalidSpec", "message": "KUBESCRIBE_SPEC is not set", "exitCode": 2}
