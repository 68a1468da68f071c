"""The API server's Pod Security admission enforces the `restricted` profile in the release namespace and in the
tenants' namespaces, and admits every pod Kubescribe makes there."""

from __future__ import annotations

import json

from tests.integration.conftest import RESTRICTED, Cluster, Gateway, Kubescribe


def labelled_restricted(cluster: Cluster, namespace: str) -> bool:
    key, value = RESTRICTED.split("=")
    return bool(cluster.get("namespace", namespace)["metadata"]["labels"].get(key) == value)


def test_a_pod_short_of_the_restricted_profile_is_refused(cluster: Cluster, namespace: str) -> None:
    compliant = cluster.pod("compliant", namespace, "print('ok')")
    loose = cluster.pod("loose", namespace, "print('ok')")
    del loose["spec"]["securityContext"]
    created = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(compliant), check=False)
    refused = cluster.kubectl("create", "-f", "-", input=json.dumps(loose), check=False)
    assert created.returncode == 0, created.stderr
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr
    assert "runAsNonRoot" in refused.stderr
    assert cluster.try_get("pod", "loose", "-n", namespace) is None


def test_the_operators_gateways_and_runners_pods_are_admitted(
    gateway: Gateway, kubescribe: Kubescribe, cluster: Cluster, namespace: str
) -> None:
    assert labelled_restricted(cluster, kubescribe.namespace)
    for component in ("operator", "gateway"):
        assert kubescribe.component_pid(component) > 0
    assert labelled_restricted(cluster, namespace)
    kubescribe.submit(namespace, "admitted", source={"s3": {"bucket": "audio", "key": f"{namespace}/absent.wav"}})
    kubescribe.wait_finished(namespace, "admitted")
    runners = kubescribe.runner_pods(namespace, "admitted")
    assert runners
    assert all(runner["spec"]["securityContext"]["runAsNonRoot"] is True for runner in runners)
    refusals = cluster.get("events", "-n", namespace, "--field-selector", "reason=FailedCreate")["items"]
    assert refusals == []
