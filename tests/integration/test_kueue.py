"""Kueue runs in the local cluster: it queues labelled Jobs against a ClusterQueue's GPU quota, and the API
server calls its webhooks."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from localcluster import kueue, pki
from tests.integration.conftest import Cluster, wait_for

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_API = "kueue.x-k8s.io/v1beta2"


def cluster_queue(name: str, flavor: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    covered = [resource["name"] for resource in resources]
    return {
        "apiVersion": KUEUE_API,
        "kind": "ClusterQueue",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {},
            "resourceGroups": [{"coveredResources": covered, "flavors": [{"name": flavor, "resources": resources}]}],
        },
    }


@contextlib.contextmanager
def queues(
    cluster: Cluster, namespace: str, quota: list[dict[str, Any]], preemption: dict[str, str] | None = None
) -> Iterator[str]:
    """A LocalQueue `gpus` in `namespace` whose ClusterQueue (with `preemption`, if given) has `quota`; yields the
    ClusterQueue's name, then deletes them."""
    suffix = uuid.uuid4().hex[:8]
    flavor, name = f"flavor-{suffix}", f"gpus-{suffix}"
    queue = cluster_queue(name, flavor, quota)
    if preemption:
        queue["spec"]["preemption"] = preemption
    cluster.apply(
        {"apiVersion": KUEUE_API, "kind": "ResourceFlavor", "metadata": {"name": flavor}},
        queue,
        {
            "apiVersion": KUEUE_API,
            "kind": "LocalQueue",
            "metadata": {"name": "gpus", "namespace": namespace},
            "spec": {"clusterQueue": name},
        },
    )
    yield name
    cluster.kubectl("delete", "localqueue", "gpus", "-n", namespace, "--wait=false", check=False)
    cluster.kubectl("delete", "clusterqueue", name, f"resourceflavor/{flavor}", "--wait=false", check=False)


@pytest.fixture
def local_queue(cluster: Cluster, namespace: str) -> Iterator[str]:
    """A LocalQueue in the test's namespace whose ClusterQueue has a quota of one GPU; yields its name."""
    quota = [
        {"name": "cpu", "nominalQuota": "2"},
        {"name": "memory", "nominalQuota": "2Gi"},
        {"name": "nvidia.com/gpu", "nominalQuota": "1"},
    ]
    with queues(cluster, namespace, quota):
        yield "gpus"


def gpu_job(cluster: Cluster, name: str, namespace: str, queue: str, *, suspend: bool) -> dict[str, Any]:
    """A Job in `queue` whose one pod asks one GPU and runs for a moment."""
    resources = {"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": "1"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": {QUEUE_LABEL: queue}},
        "spec": {
            "suspend": suspend,
            "backoffLimit": 0,
            "template": cluster.pod_template(
                "import time; time.sleep(2)",
                container={"resources": {"requests": resources, "limits": {"nvidia.com/gpu": "1"}}},
            ),
        },
    }


def finished(job: dict[str, Any]) -> bool:
    conditions = job.get("status", {}).get("conditions", [])
    return any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conditions)


def workload_of(cluster: Cluster, namespace: str, job: dict[str, Any]) -> dict[str, Any] | None:
    workloads = cluster.get("workloads", "-n", namespace)["items"]
    uid = job["metadata"]["uid"]
    owned = [w for w in workloads if any(ref["uid"] == uid for ref in w["metadata"].get("ownerReferences", []))]
    return owned[0] if owned else None


def test_two_jobs_share_one_gpu_of_quota_one_after_the_other(
    cluster: Cluster, namespace: str, local_queue: str
) -> None:
    names = ("first", "second")
    cluster.apply(*(gpu_job(cluster, name, namespace, local_queue, suspend=True) for name in names))

    jobs: dict[str, dict[str, Any]] = {}
    running_order: list[str] = []

    def both_done() -> bool:
        jobs.update((job["metadata"]["name"], job) for job in cluster.get("jobs", "-n", namespace)["items"])
        running = [name for name in names if not jobs[name]["spec"]["suspend"] and not finished(jobs[name])]
        assert len(running) < 2, "both Jobs run at once on a quota of one GPU"
        running_order.extend(name for name in running if name not in running_order)
        return all(jobs[name].get("status", {}).get("succeeded") == 1 for name in names)

    wait_for(both_done, 180, "both Jobs to succeed, one after the other", interval=0.2)

    assert sorted(running_order) == sorted(names)
    first, second = (jobs[name] for name in running_order)
    assert first["status"]["completionTime"] <= second["status"]["startTime"]
    for job in (first, second):
        workload = workload_of(cluster, namespace, job)
        assert workload is not None
        assert workload["status"]["admission"]["clusterQueue"].startswith("gpus-")
        conditions = {c["type"]: c["status"] for c in workload["status"]["conditions"]}
        assert conditions["Finished"] == "True"


def test_kueues_webhook_suspends_a_labelled_job_created_running(
    cluster: Cluster, namespace: str, local_queue: str
) -> None:
    job = json.dumps(gpu_job(cluster, "eager", namespace, local_queue, suspend=False))
    # The object as created, after admission: Kueue's controller unsuspends it as soon as it is admitted.
    created = json.loads(cluster.kubectl("create", "-f", "-", "-o", "json", input=job).stdout)
    assert created["spec"]["suspend"] is True
    wait_for(lambda: cluster.get("job", "eager", "-n", namespace).get("status", {}).get("succeeded"), 120, "the Job")


def test_a_job_without_the_queue_label_is_left_alone(cluster: Cluster, namespace: str) -> None:
    job = gpu_job(cluster, "unqueued", namespace, "none", suspend=False)
    del job["metadata"]["labels"][QUEUE_LABEL]
    created = json.loads(cluster.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(job)).stdout)
    assert created["spec"]["suspend"] is False


def test_kueues_validating_webhook_refuses_a_bad_cluster_queue(cluster: Cluster) -> None:
    name = f"bad-{uuid.uuid4().hex[:8]}"
    # Passes the CRD's schema; only Kueue's webhook checks that quotas name the covered resources.
    bad = cluster_queue(name, "any", [{"name": "cpu", "nominalQuota": "1"}])
    bad["spec"]["resourceGroups"][0]["coveredResources"] = ["memory"]
    result = cluster.kubectl("create", "-f", "-", input=json.dumps(bad), check=False)
    assert result.returncode != 0
    assert 'admission webhook "vclusterqueue.kb.io" denied the request' in result.stderr
    assert "must match the name in coveredResources" in result.stderr
    assert cluster.try_get("clusterqueue", name) is None


def test_kueue_acts_with_its_own_rbac_not_an_administrators(cluster: Cluster, namespace: str) -> None:
    def may(*request: str) -> bool:
        answer = cluster.kubectl("auth", "can-i", *request, f"--as={pki.KUEUE.user}", check=False).stdout
        return answer.strip() == "yes"

    assert may("update", "clusterqueues.kueue.x-k8s.io/status")
    assert may("update", "jobs.batch", "-n", namespace)
    assert may("update", "secrets", "-n", kueue.NAMESPACE)
    assert not may("get", "secrets", "-n", namespace)
    assert not may("create", "pods", "-n", namespace)
    assert not may("delete", "namespaces")
