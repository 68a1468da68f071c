"""A runner pool's worker against the local cluster, without the operator: the tests create RunnerAssignments as the
operator would, and run workers as processes of this machine with a ServiceAccount that holds only the worker's
verbs."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client, config

from kubescribe.api.pools import ASSIGNMENT_PLURAL, LEASE_SECONDS, POOL_LABEL
from kubescribe.api.v1alpha1 import GROUP, VERSION, TranscriptionJobSpec
from kubescribe.contract import (
    ENV_JOB_NAME,
    ENV_JOB_NAMESPACE,
    ENV_MODEL_CACHE,
    ENV_POOL,
    ENV_POOL_CONCURRENCY,
    ENV_POOL_MODEL,
    ENV_POOL_NAMESPACE,
    ENV_SPEC,
    ENV_STORE_GRANTS,
    ENV_WORKER,
    ENV_WORKER_PORT,
    Grant,
    StoreGrants,
)
from localcluster.cluster import free_port
from localcluster.kubeconfig import kubeconfig, write_kubeconfig, write_private
from tests.integration.conftest import REPO, Cluster, wait_for
from tests.integration.leaks import SIGNED_URL_PARTS
from tests.integration.speech import PASSAGE, speak, word_error_rate

pytestmark = pytest.mark.integration

POOL = "tiny"
MODEL = "tiny.en"
BUCKET = "pool-audio"
ACCOUNT = "kubescribe-worker"
SENTENCE = "Please send the report to the office before Friday."
WORKER_RULES = [
    {"apiGroups": [GROUP], "resources": [ASSIGNMENT_PLURAL], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [GROUP], "resources": [f"{ASSIGNMENT_PLURAL}/status"], "verbs": ["patch"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create", "get", "update"]},
]
"""What docs/design/runner-pools.md grants a worker, in its pool's namespace, and nothing else."""


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> None:
    for crd in ("runnerpools", "runnerassignments"):
        cluster.kubectl("apply", "-f", str(REPO / f"crds/{crd}.kubescribe.io.yaml"))
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}.kubescribe.io", "--timeout=60s")


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pool-speech")
    return {
        "long": speak(directory, "passage", PASSAGE, repeat=3),
        "short": speak(directory, "sentence", SENTENCE),
    }


@pytest.fixture(scope="module")
def admin(cluster: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(str(cluster.local.admin_kubeconfig)))


@dataclass
class Pool:
    """A pool's namespace: its worker ServiceAccount's kubeconfig, and the assignments the tests give it."""

    cluster: Cluster
    admin: client.CustomObjectsApi
    namespace: str
    kubeconfig: Path
    directory: Path

    def assign(self, name: str, wav: Path, model: str = MODEL) -> None:
        """A RunnerAssignment of a job `name` that transcribes `wav` (uploaded to the store) to txt, its environment
        what the operator gives a runner pod: the spec and presigned URLs of the job's own objects."""
        s3 = self.cluster.s3()
        if not s3.bucket_exists(BUCKET):
            s3.make_bucket(BUCKET)
        source_key, transcript_key = f"{self.namespace}/{name}.wav", f"{self.namespace}/{name}.txt"
        s3.fput_object(BUCKET, source_key, str(wav))
        valid = datetime.timedelta(hours=1)
        grants = StoreGrants(
            expires=(datetime.datetime.now(datetime.UTC) + valid).isoformat(),
            source=Grant(url=s3.presigned_get_object(BUCKET, source_key, valid), uri=f"s3://{BUCKET}/{source_key}"),
            outputs={
                "txt": Grant(
                    url=s3.presigned_put_object(BUCKET, transcript_key, valid), uri=f"s3://{BUCKET}/{transcript_key}"
                )
            },
        )
        spec = TranscriptionJobSpec.model_validate(
            {
                "source": {"s3": {"bucket": BUCKET, "key": source_key}},
                "model": model,
                "outputs": {"formats": ["txt"]},
                # The sequential decoder reports progress window by window: several reports in a short job.
                "options": {"vad": False},
            }
        )
        environment = {
            ENV_SPEC: spec.model_dump_json(by_alias=True, exclude_none=True),
            ENV_JOB_NAME: name,
            ENV_JOB_NAMESPACE: "tenant",
            ENV_MODEL_CACHE: "/models",
            ENV_STORE_GRANTS: grants.model_dump_json(),
        }
        self.cluster.apply(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "RunnerAssignment",
                "metadata": {"name": name, "namespace": self.namespace, "labels": {POOL_LABEL: POOL}},
                "spec": {
                    "pool": POOL,
                    "job": {"namespace": "tenant", "name": name, "uid": str(uuid.uuid4())},
                    "attempt": 1,
                    "environment": environment,
                },
            }
        )

    def assignment(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.admin.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, ASSIGNMENT_PLURAL, name
        )
        return found

    def status(self, name: str) -> dict[str, Any]:
        return self.assignment(name).get("status") or {}

    def lease(self, name: str) -> dict[str, Any] | None:
        return self.cluster.try_get("lease", name, "-n", self.namespace)

    def outcome(self, name: str, timeout: float = 120) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("result") or status.get("failure") else None

        found: dict[str, Any] = wait_for(ended, timeout, f"the outcome of {name}")
        return found

    def transcript(self, name: str) -> str | None:
        try:
            return str(self.cluster.s3().get_object(BUCKET, f"{self.namespace}/{name}.txt").read().decode())
        except Exception:
            return None


@pytest.fixture
def pool(cluster: Cluster, crds: None, admin: client.CustomObjectsApi, namespace: str, tmp_path: Path) -> Pool:
    """The worker's ServiceAccount in `namespace`, bound to a Role of the worker's verbs only, and a kubeconfig with
    its token."""
    cluster.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ACCOUNT, "namespace": namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": ACCOUNT, "namespace": namespace},
            "rules": WORKER_RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": ACCOUNT, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
        },
    )
    token = cluster.kubectl("create", "token", ACCOUNT, "-n", namespace).stdout.strip()
    admin_config = yaml.safe_load(cluster.local.admin_kubeconfig.read_text())
    ca_file = Path(admin_config["clusters"][0]["cluster"]["certificate-authority"])
    worker_config = kubeconfig(
        cluster.local.api_url(cluster.state), ca_file, user=ACCOUNT, token_file=write_private(tmp_path / "token", token)
    )
    return Pool(cluster, admin, namespace, write_kubeconfig(tmp_path / "worker.kubeconfig", worker_config), tmp_path)


class Worker:
    """`python -m kubescribe.runner.worker` as a process of this machine, with no store credentials."""

    def __init__(self, pool: Pool, name: str, concurrency: int = 1) -> None:
        self.name = name
        self.port = free_port()
        self.log = pool.directory / f"{name}.log"
        env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            "HOME": str(pool.directory),
            "HF_HUB_OFFLINE": "1",
            "KUBECONFIG": str(pool.kubeconfig),
            ENV_POOL: POOL,
            ENV_POOL_NAMESPACE: pool.namespace,
            ENV_POOL_MODEL: MODEL,
            ENV_POOL_CONCURRENCY: str(concurrency),
            ENV_WORKER: name,
            ENV_MODEL_CACHE: str(pool.directory / "models"),
            ENV_WORKER_PORT: str(self.port),
        }
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kubescribe.runner.worker"], env=env, stderr=log, stdout=log, cwd=pool.directory
            )

    def probe(self, path: str) -> int | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5).status_code
        except httpx.HTTPError:
            return None

    def wait_ready(self) -> None:
        wait_for(lambda: self.probe("/readyz") == 200, 60, f"{self.name} to be ready")

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

    def claimed(self) -> list[str]:
        return [line["assignment"] for line in self.lines() if line["message"] == "claimed"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@contextlib.contextmanager
def workers(pool: Pool, *names: str, concurrency: int = 1) -> Iterator[list[Worker]]:
    started = [Worker(pool, name, concurrency) for name in names]
    try:
        for worker in started:
            worker.wait_ready()
        yield started
    finally:
        for worker in started:
            worker.stop()


class ProgressWatch:
    """The percents an assignment's status shows, polled while the test goes on."""

    def __init__(self, pool: Pool, name: str) -> None:
        self.percents: list[float] = []
        self._stop = threading.Event()

        def poll() -> None:
            while not self._stop.wait(0.2):
                with contextlib.suppress(Exception):
                    percent = (pool.status(name).get("progress") or {}).get("percent")
                    if percent is not None and (not self.percents or self.percents[-1] != percent):
                        self.percents.append(percent)

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()

    def running(self) -> bool:
        return any(0 < percent < 100 for percent in self.percents)

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return self.percents


def signatures(pool: Pool, *names: str) -> list[str]:
    """The presigned URLs' signatures of the assignments `names`."""
    found = []
    for name in names:
        grants = pool.assignment(name)["spec"]["environment"][ENV_STORE_GRANTS]
        found += [match.group(0) for match in SIGNED_URL_PARTS.finditer(grants)]
    return found


def test_a_worker_runs_an_assignment_reporting_progress_then_its_result(pool: Pool, speech: dict[str, Path]) -> None:
    with workers(pool, "worker-a") as (worker,):
        pool.assign("passage", speech["long"])
        watch = ProgressWatch(pool, "passage")
        status = pool.outcome("passage")
        percents = watch.stop()

        assert status["worker"] == "worker-a"
        assert "failure" not in status, status
        assert status["result"]["outputs"] == {"txt": f"s3://{BUCKET}/{pool.namespace}/passage.txt"}
        assert status["progress"]["percent"] == 100
        assert percents == sorted(percents)
        assert any(0 < percent < 100 for percent in percents), percents
        transcript = pool.transcript("passage")
        assert transcript is not None
        assert word_error_rate(" ".join([PASSAGE] * 3), transcript) < 0.2
        lease = pool.lease("passage")
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == "worker-a"
        assert lease["spec"]["leaseDurationSeconds"] == LEASE_SECONDS
        assert lease["metadata"]["ownerReferences"][0]["uid"] == pool.assignment("passage")["metadata"]["uid"]

        attempt_lines = [line for line in worker.lines() if line.get("assignment") == "passage"]
        assert {line["job"] for line in attempt_lines} == {"passage"}
        assert {(line["jobNamespace"], line["attempt"]) for line in attempt_lines} == {("tenant", 1)}
        secrets = signatures(pool, "passage")
        assert secrets
        assert not any(secret in worker.log.read_text() or secret in json.dumps(status) for secret in secrets)


def test_the_worker_needs_no_more_than_its_role(pool: Pool) -> None:
    """The worker of every test here runs with this ServiceAccount: these verbs are enough, and all it has."""
    account = f"system:serviceaccount:{pool.namespace}:{ACCOUNT}"
    granted = pool.cluster.permissions(account, pool.namespace)
    expected = {
        (qualified(resource, group), "", verb)
        for rule in WORKER_RULES
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == expected


def qualified(resource: str, group: str) -> str:
    """A resource as `kubectl auth can-i --list` names it: leases.coordination.k8s.io, pods/status,
    transcriptionjobs.kubescribe.io/status."""
    name, slash, subresource = resource.partition("/")
    return f"{name}.{group}{slash}{subresource}"


def test_two_workers_claim_disjoint_assignments_each_run_once(pool: Pool, speech: dict[str, Path]) -> None:
    names = [f"clip-{number}" for number in range(6)]
    with workers(pool, "worker-a", "worker-b", concurrency=2) as started:
        for name in names:
            pool.assign(name, speech["short"])
        pool.assign("other-model", speech["short"], model="base.en")
        outcomes = {name: pool.outcome(name) for name in names}
        mismatch = pool.outcome("other-model")

    claims = [claimed for worker in started for claimed in worker.claimed()]
    assert sorted(claims) == sorted([*names, "other-model"])
    assert all(worker.claimed() for worker in started), "both workers took assignments"
    for name, status in outcomes.items():
        assert "failure" not in status, status
        assert status["worker"] == pool.lease(name)["spec"]["holderIdentity"]  # type: ignore[index]
        assert word_error_rate(SENTENCE, pool.transcript(name) or "") < 0.3
    assert mismatch["failure"]["reason"] == "ModelMismatch"
    assert mismatch["failure"]["exitCode"] == 2
    assert "base.en" in mismatch["failure"]["message"]


def test_a_killed_worker_leaves_a_lease_that_is_no_longer_renewed_and_no_result(
    pool: Pool, speech: dict[str, Path]
) -> None:
    with workers(pool, "worker-a") as (worker,):
        pool.assign("passage", speech["long"])
        watch = ProgressWatch(pool, "passage")
        wait_for(watch.running, 120, "the transcription to run", interval=0.1)
        wait_for(lambda: renewed_since_acquired(pool.lease("passage")), LEASE_SECONDS, "a renewal", interval=0.1)
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(timeout=30)
        watch.stop()

    renewed = pool.lease("passage")["spec"]["renewTime"]  # type: ignore[index]
    time.sleep(LEASE_SECONDS * 2 / 3)
    lease = pool.lease("passage")
    assert lease is not None
    assert lease["spec"]["renewTime"] == renewed
    assert lease["spec"]["holderIdentity"] == "worker-a"
    assert "result" not in pool.status("passage")
    assert pool.transcript("passage") is None


def renewed_since_acquired(lease: dict[str, Any] | None) -> bool:
    return lease is not None and lease["spec"]["renewTime"] != lease["spec"]["acquireTime"]


def test_sigterm_lets_the_running_attempt_finish_before_the_worker_exits(pool: Pool, speech: dict[str, Path]) -> None:
    with workers(pool, "worker-a") as (worker,):
        pool.assign("passage", speech["long"])
        watch = ProgressWatch(pool, "passage")
        wait_for(watch.running, 120, "the transcription to run", interval=0.1)
        worker.process.send_signal(signal.SIGTERM)
        wait_for(lambda: worker.probe("/readyz") == 503, 10, "the worker to stop taking assignments", interval=0.1)
        assert worker.probe("/healthz") == 200
        pool.assign("late", speech["short"])
        assert worker.process.wait(timeout=120) == 0
        watch.stop()

    assert pool.status("passage")["result"]["outputs"]
    assert pool.transcript("passage") is not None
    assert "worker" not in pool.status("late")
    assert pool.lease("late") is None
