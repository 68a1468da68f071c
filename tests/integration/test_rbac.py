"""Each component's ServiceAccount may do exactly what the component does, and nothing more."""

from __future__ import annotations

import yaml

from tests.integration.conftest import REPO, Cluster, Gateway, Kubescribe

Permissions = set[tuple[str, str, str]]


def grants(resource: str, *verbs: str, name: str = "") -> Permissions:
    return {(resource, name, verb) for verb in verbs}


OPERATOR: Permissions = (
    grants("transcriptionjobs.kubescribe.io", "list", "watch", "patch", "delete")
    | grants("transcriptionjobs.kubescribe.io/status", "patch")
    | grants("transcriptionjobs.kubescribe.io/finalizers", "update")
    | grants("jobs.batch", "list", "watch", "create", "delete")
    | grants("pods", "list", "watch", "delete")
    | grants("pods/status", "patch")
    | grants("serviceaccounts", "create")
    | grants("secrets", "create", "delete")
    | grants("secrets", "get", name="kubescribe-webhook")
    | grants("localqueues.kueue.x-k8s.io", "list")
    | grants("workloads.kueue.x-k8s.io", "list")
    | grants("roles.rbac.authorization.k8s.io", "create")
    | grants("rolebindings.rbac.authorization.k8s.io", "create")
    | grants("events", "create")
)
"""In every namespace the operator works in; the local cluster runs Kueue, so the operator reads Kueue's decisions."""

OPERATOR_POOLS: Permissions = (
    grants("runnerpools.kubescribe.io", "list", "watch")
    | grants("runnerpools.kubescribe.io/status", "patch")
    | grants("runnerassignments.kubescribe.io", "list", "watch", "create", "delete")
    | grants("leases.coordination.k8s.io", "list")
    | grants("deployments.apps", "list", "watch", "create", "patch")
    | grants("secrets", "create", "patch")
)
"""In the release namespace only, besides OPERATOR: the runner pools, their workers, their assignments and the
Secrets of their s3:// models."""

WORKER: Permissions = (
    grants("runnerassignments.kubescribe.io", "get", "list", "watch")
    | grants("runnerassignments.kubescribe.io/status", "patch")
    | grants("leases.coordination.k8s.io", "create", "get", "update")
)
"""A pool's worker, in the release namespace only."""

GATEWAY: Permissions = (
    grants("transcriptionjobs.kubescribe.io", "create", "get", "list", "watch", "delete")
    | grants("tokenreviews.authentication.k8s.io", "create")
    | grants("subjectaccessreviews.authorization.k8s.io", "create")
)
"""In every namespace; in the release namespace also the API key Secret."""


UNINSTALL_HOOK: Permissions = grants("transcriptionjobs.kubescribe.io", "list", "patch")
"""In every namespace the operator worked in; in the release namespace also listing pods, to wait for the
operator's to go."""


def runner(job: str) -> Permissions:
    """In its job's namespace, and nothing elsewhere."""
    return grants("transcriptionjobs.kubescribe.io/status", "patch", name=job)


def account(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def test_the_operator_may_do_exactly_what_it_does(kubescribe: Kubescribe, cluster: Cluster, namespace: str) -> None:
    operator = account(kubescribe.namespace, "kubescribe-operator")
    assert cluster.permissions(operator, namespace) == OPERATOR
    assert cluster.permissions(operator, kubescribe.namespace) == OPERATOR | OPERATOR_POOLS


def test_a_pool_worker_may_do_exactly_what_it_does(kubescribe: Kubescribe, cluster: Cluster, namespace: str) -> None:
    worker = account(kubescribe.namespace, "kubescribe-worker")
    assert cluster.permissions(worker, kubescribe.namespace) == WORKER
    assert cluster.permissions(worker, namespace) == set()


def test_the_gateway_may_do_exactly_what_it_does(gateway: Gateway, cluster: Cluster) -> None:
    release = gateway.kubescribe.namespace
    account_name = account(release, "kubescribe-gateway")
    assert cluster.permissions(account_name, "gw-a") == GATEWAY
    assert cluster.permissions(account_name, release) == GATEWAY | grants("secrets", "get", name="kubescribe-api-keys")


def test_a_runner_may_only_patch_its_own_jobs_status(kubescribe: Kubescribe, cluster: Cluster, namespace: str) -> None:
    kubescribe.submit(namespace, "mine", source={"s3": {"bucket": "audio", "key": f"{namespace}/absent.wav"}})
    kubescribe.wait_finished(namespace, "mine")
    runner_account = account(namespace, "transcribe-mine")
    assert cluster.permissions(runner_account, namespace) == runner("mine")
    assert cluster.permissions(runner_account, "default") == set()


def test_the_uninstall_hook_may_do_exactly_what_it_does(
    kubescribe: Kubescribe, cluster: Cluster, namespace: str
) -> None:
    """Its RBAC exists only while `helm uninstall` runs it: applied here as the chart renders it."""
    rendered = cluster.run(
        "helm",
        "template",
        kubescribe.release,
        str(REPO / "charts/kubescribe"),
        "-n",
        kubescribe.namespace,
        "-s",
        "templates/uninstall-hook.yaml",
    ).stdout
    rbac = yaml.safe_dump_all(d for d in yaml.safe_load_all(rendered) if d and d["kind"] != "Job")
    cluster.kubectl("apply", "-n", kubescribe.namespace, "-f", "-", input=rbac)
    try:
        hook = account(kubescribe.namespace, "kubescribe-uninstall")
        assert cluster.permissions(hook, namespace) == UNINSTALL_HOOK
        assert cluster.permissions(hook, kubescribe.namespace) == UNINSTALL_HOOK | grants("pods", "list")
    finally:
        cluster.kubectl("delete", "-n", kubescribe.namespace, "-f", "-", input=rbac)
