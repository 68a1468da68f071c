"""A runner pool on the real local cluster, without the worker process: the shared release is reinstalled with a
pool whose workers are a stand-in that only answers the worker's probes (so that the pool's Deployment reports ready
workers as it would with real ones), and the tests play the worker's part in the API by hand: claim an assignment
with a Lease, report a result. Restored after them."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from kubescribe.api.v1alpha1 import TranscriptionJobSpec, transcript_uris
from kubescribe.contract import ENV_STORE_GRANTS
from localcluster.cluster import free_port
from tests.integration.conftest import Cluster, Kubescribe, scratch_namespace, wait_for

POOL = "tiny"
WORKERS = f"{POOL}-workers"
STAND_IN = """
import http.server
import os
import signal
import sys

signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

class Probes(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path in ("/readyz", "/healthz") else 404)
        self.end_headers()

http.server.HTTPServer(("", int(os.environ["KUBESCRIBE_WORKER_PORT"])), Probes).serve_forever()
"""
"""Answers the worker's probes and stops when told, and does nothing else: the tests claim and report assignments
themselves."""


def stand_in_command() -> list[str]:
    # Base64 (padded away) keeps commas and `=` out of the script, which `helm --set` would split on.
    script = STAND_IN + " " * (-len(STAND_IN) % 3)
    return ["python", "-c", f"import base64;exec(base64.b64decode('{base64.b64encode(script.encode()).decode()}'))"]


def pool_values(served: str, port: int, replicas: int) -> dict[str, str]:
    command = {f"workers.command[{i}]": part for i, part in enumerate(stand_in_command())}
    return {
        "pools[0].name": POOL,
        "pools[0].model": "tiny.en",
        "pools[0].namespaces[0]": served,
        "pools[0].concurrency": "4",
        "pools[0].replicas.min": str(replicas),
        "pools[0].replicas.max": str(replicas),
        "workers.port": str(port),
        **command,
    }


@pytest.fixture(scope="module")
def served(cluster: Cluster) -> Iterator[str]:
    """A namespace the pool serves."""
    with scratch_namespace(cluster, "pool") as name:
        yield name


@pytest.fixture(scope="module")
def pool(kubescribe: Kubescribe, cluster: Cluster, served: str) -> Iterator[dict[str, str]]:
    """The release with one pool of one ready (stand-in) worker; the values it was installed with."""
    values = pool_values(served, free_port(), replicas=1)
    kubescribe.install(**values)
    try:
        wait_for(lambda: stand_in_ready(cluster, kubescribe), 180, "the pool's one stand-in worker to be ready")
        yield values
    finally:
        kubescribe.install()
        wait_for(lambda: not kubescribe.worker_pods(POOL), 120, "the pool's workers to be gone")


def stand_in_ready(cluster: Cluster, kubescribe: Kubescribe) -> bool:
    """Whether the pool runs one worker, ready, and it is the stand-in: the operator the install restarted may first
    have made the workers with its old settings, a real worker that would claim the tests' assignments."""
    deployment = cluster.try_get("deployment", WORKERS, "-n", kubescribe.namespace) or {}
    [container] = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [{}]
    status = deployment.get("status", {})
    return (
        container.get("command") == stand_in_command()
        and status.get("observedGeneration") == deployment["metadata"]["generation"]
        and status.get("updatedReplicas") == status.get("readyReplicas") == 1
        and len(kubescribe.worker_pods(POOL)) == 1
    )


def submit(kubescribe: Kubescribe, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    kubescribe.submit(namespace, name, source={"s3": {"bucket": "audio", "key": f"{namespace}/{name}.wav"}}, **spec)
    job = kubescribe.job(namespace, name)
    assert job is not None
    return job


def assignments(cluster: Cluster, kubescribe: Kubescribe, job: dict[str, Any]) -> list[dict[str, Any]]:
    selector = f"kubescribe.io/job-uid={job['metadata']['uid']}"
    items: list[dict[str, Any]] = cluster.get("runnerassignments", "-n", kubescribe.namespace, "-l", selector)["items"]
    return sorted(items, key=lambda assignment: assignment["spec"]["attempt"])


def wait_assignment(cluster: Cluster, kubescribe: Kubescribe, job: dict[str, Any], attempt: int = 1) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((a for a in assignments(cluster, kubescribe, job) if a["spec"]["attempt"] == attempt), None)

    assignment: dict[str, Any] = wait_for(found, 60, f"attempt {attempt} of {job['metadata']['name']}")
    return assignment


def wait_status(kubescribe: Kubescribe, namespace: str, name: str, phase: str, reason: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status = (kubescribe.job(namespace, name) or {}).get("status") or {}
        return status if (status.get("phase"), status.get("reason")) == (phase, reason) else None

    status: dict[str, Any] = wait_for(reached, 90, f"{namespace}/{name} to be {phase} ({reason})")
    return status


def report(cluster: Cluster, kubescribe: Kubescribe, assignment: dict[str, Any], status: dict[str, Any]) -> None:
    """What a worker writes into its assignment's status."""
    name = assignment["metadata"]["name"]
    patch = json.dumps({"status": status})
    cluster.kubectl(
        "patch",
        "runnerassignment",
        name,
        "-n",
        kubescribe.namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    )


def claim(cluster: Cluster, kubescribe: Kubescribe, assignment: dict[str, Any], seconds: int) -> None:
    """What a worker does to take an assignment: creates its Lease, here never renewed."""
    metadata = assignment["metadata"]
    renewed = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": metadata["name"],
            "namespace": kubescribe.namespace,
            "ownerReferences": [
                {
                    "apiVersion": "kubescribe.io/v1alpha1",
                    "kind": "RunnerAssignment",
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                }
            ],
        },
        "spec": {
            "holderIdentity": "stand-in-worker",
            "leaseDurationSeconds": seconds,
            "acquireTime": renewed,
            "renewTime": renewed,
        },
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(lease))
    report(cluster, kubescribe, assignment, {"worker": "stand-in-worker"})


def test_the_pool_runs_its_workers_as_runner_pods_run(
    pool: dict[str, str], kubescribe: Kubescribe, cluster: Cluster
) -> None:
    deployment = cluster.get("deployment", WORKERS, "-n", kubescribe.namespace)
    assert deployment["metadata"]["labels"]["kubescribe.io/pool"] == POOL
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "RunnerPool"
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kubescribe-worker"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    assert (
        container["image"]
        == f"{kubescribe.values['runner.image.repository']}@{kubescribe.values['runner.image.digest']}"
    )
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["KUBESCRIBE_POOL"] == POOL
    assert env["KUBESCRIBE_POOL_MODEL"] == "tiny.en"
    assert env["KUBESCRIBE_POOL_CONCURRENCY"] == "4"
    assert env["KUBESCRIBE_WORKER_PORT"] == pool["workers.port"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    status = wait_for(
        lambda: (
            (s := cluster.get("runnerpool", POOL, "-n", kubescribe.namespace).get("status"))
            and s.get("readyReplicas") == 1
            and s
        ),
        60,
        "the pool's status",
    )
    assert status["replicas"] == 1


def test_an_auto_job_of_a_served_namespace_runs_in_the_pool_until_its_worker_reports(
    pool: dict[str, str], kubescribe: Kubescribe, cluster: Cluster, served: str
) -> None:
    job = submit(kubescribe, served, "pooled")
    assignment = wait_assignment(cluster, kubescribe, job)
    assert assignment["spec"]["pool"] == POOL
    assert assignment["spec"]["job"] == {"namespace": served, "name": "pooled", "uid": job["metadata"]["uid"]}
    environment = assignment["spec"]["environment"]
    grants = json.loads(environment[ENV_STORE_GRANTS])
    assert "X-Amz-Signature=" in grants["source"]["url"]
    assert not [name for name in environment if name.startswith("AWS_")]
    everything = json.dumps(assignment)
    assert cluster.state.minio_password not in everything
    status = wait_status(kubescribe, served, "pooled", "Running", "Assigned")
    assert (status["pool"], status["assignment"]) == (POOL, assignment["metadata"]["name"])
    assert cluster.try_get("job", "transcribe-pooled", "-n", served) is None

    spec = TranscriptionJobSpec.model_validate({"model": "tiny.en", **job["spec"]})
    outputs = transcript_uris(spec, served, "pooled", "transcripts")
    report(
        cluster, kubescribe, assignment, {"worker": "stand-in-worker", "result": {"language": "en", "outputs": outputs}}
    )
    finished = kubescribe.wait_finished(served, "pooled", timeout=60)["status"]
    assert (finished["phase"], finished["attempts"]) == ("Succeeded", 1)
    assert finished["result"] == {"language": "en", "outputs": outputs}


def test_jobs_the_pool_does_not_take_get_a_runner_job(
    pool: dict[str, str], kubescribe: Kubescribe, cluster: Cluster, served: str, namespace: str
) -> None:
    unserved = submit(kubescribe, namespace, "elsewhere")
    isolated = submit(kubescribe, served, "isolated", execution="Isolated")
    for job in (unserved, isolated):
        metadata = job["metadata"]
        runner = f"transcribe-{metadata['name']}"
        wait_for(lambda: cluster.try_get("job", runner, "-n", metadata["namespace"]), 60, f"{runner}")  # noqa: B023
        assert assignments(cluster, kubescribe, job) == []
        assert kubescribe.wait_finished(metadata["namespace"], metadata["name"])["status"].get("pool") is None


def test_a_lost_worker_runs_the_job_again_as_a_new_attempt(
    pool: dict[str, str], kubescribe: Kubescribe, cluster: Cluster, served: str
) -> None:
    job = submit(kubescribe, served, "lost")
    first = wait_assignment(cluster, kubescribe, job)
    claim(cluster, kubescribe, first, seconds=3)
    wait_status(kubescribe, served, "lost", "Running", "WorkerRunning")
    second = wait_assignment(cluster, kubescribe, job, attempt=2)
    wait_for(lambda: len(assignments(cluster, kubescribe, job)) == 1, 30, "the lost assignment to be deleted")
    status = wait_status(kubescribe, served, "lost", "Running", "Assigned")
    assert (status["attempts"], status["assignment"]) == (2, second["metadata"]["name"])
    warnings = kubescribe.warnings(served, "lost")
    assert "Retrying" in warnings


def test_deleting_a_job_deletes_its_assignments(
    pool: dict[str, str], kubescribe: Kubescribe, cluster: Cluster, served: str
) -> None:
    job = submit(kubescribe, served, "deleted")
    wait_assignment(cluster, kubescribe, job)
    cluster.kubectl("delete", "tj", "deleted", "-n", served, "--timeout=60s")
    wait_for(lambda: assignments(cluster, kubescribe, job) == [], 30, "the job's assignments to be deleted")


def test_a_pooled_job_goes_with_its_assignments_once_its_ttl_runs_out(
    pool: dict[str, str], kubescribe: Kubescribe, cluster: Cluster, served: str
) -> None:
    job = submit(kubescribe, served, "short-lived", ttlSecondsAfterFinished=2)
    assignment = wait_assignment(cluster, kubescribe, job)
    spec = TranscriptionJobSpec.model_validate({"model": "tiny.en", **job["spec"]})
    outputs = transcript_uris(spec, served, "short-lived", "transcripts")
    report(
        cluster, kubescribe, assignment, {"worker": "stand-in-worker", "result": {"language": "en", "outputs": outputs}}
    )
    wait_for(lambda: kubescribe.job(served, "short-lived") is None, 60, "the job's TTL to delete it")
    wait_for(lambda: assignments(cluster, kubescribe, job) == [], 30, "the job's assignments to be deleted")


def test_a_pooled_job_that_no_pool_may_run_fails(
    pool: dict[str, str], kubescribe: Kubescribe, cluster: Cluster, served: str
) -> None:
    own_store = {"bucket": "audio", "key": "a.wav", "endpoint": "https://s3.example", "secretName": "mine"}
    kubescribe.submit(served, "own-store", source={"s3": own_store}, execution="Pooled")
    status = kubescribe.wait_finished(served, "own-store", timeout=60)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "NotPoolable")
    assert "own store" in status["message"]


def test_a_pooled_job_waits_while_the_pool_has_no_workers(
    pool: dict[str, str], kubescribe: Kubescribe, cluster: Cluster, served: str
) -> None:
    kubescribe.install(**{**pool, "pools[0].replicas.min": "0", "pools[0].replicas.max": "0"})
    wait_for(lambda: kubescribe.ready_workers(POOL) == 0, 60, "the pool to have no ready worker")
    job = submit(kubescribe, served, "waiting", execution="Pooled")
    wait_status(kubescribe, served, "waiting", "Queued", "NoPoolCapacity")
    time.sleep(5)  # a few more of the operator's passes
    assert kubescribe.job(served, "waiting")["status"]["phase"] == "Queued"  # type: ignore[index]
    assert assignments(cluster, kubescribe, job) == []
    assert cluster.try_get("job", "transcribe-waiting", "-n", served) is None
    assert cluster.get("runnerpool", POOL, "-n", kubescribe.namespace)["status"]["waiting"] == 1
