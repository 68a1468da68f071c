"""With `operator.namespaces` set the operator works in those namespaces only, with no powers elsewhere. The shared
release is reinstalled so limited for these tests and restored after them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.conftest import Cluster, Kubescribe, create_restricted_namespace
from tests.integration.test_rbac import OPERATOR, OPERATOR_POOLS

OPERATOR_ACCOUNT = "system:serviceaccount:kubescribe:kubescribe-operator"


@pytest.fixture(scope="module")
def limited(kubescribe: Kubescribe, cluster: Cluster) -> Iterator[tuple[str, str]]:
    """(the operator's one namespace, a namespace that is not its own), the operator limited to the first."""
    suffix = uuid.uuid4().hex[:8]
    mine, other = f"mine-{suffix}", f"other-{suffix}"
    for name in (mine, other):
        create_restricted_namespace(cluster, name)
    kubescribe.install(**{"operator.namespaces": f"{{{mine}}}", "networkPolicy.apiServer.cidrs": "{127.0.0.1/32}"})
    try:
        yield mine, other
    finally:
        kubescribe.install()
        for name in (mine, other):
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_a_job_outside_the_operators_namespaces_is_left_alone(
    limited: tuple[str, str], kubescribe: Kubescribe, cluster: Cluster
) -> None:
    mine, other = limited
    for namespace in (mine, other):
        kubescribe.submit(namespace, "absent", source={"s3": {"bucket": "audio", "key": f"{namespace}/absent.wav"}})
    assert kubescribe.wait_finished(mine, "absent")["status"]["phase"] == "Failed"
    time.sleep(5)  # a few more of the operator's passes
    untouched = kubescribe.job(other, "absent")
    assert untouched is not None
    assert "status" not in untouched
    assert not untouched["metadata"].get("finalizers")
    assert cluster.try_get("job", "transcribe-absent", "-n", other) is None


def test_the_operator_has_its_powers_only_in_its_namespaces(limited: tuple[str, str], cluster: Cluster) -> None:
    mine, other = limited
    assert cluster.permissions(OPERATOR_ACCOUNT, mine) == OPERATOR
    assert cluster.permissions(OPERATOR_ACCOUNT, other) == set()
    assert cluster.permissions(OPERATOR_ACCOUNT, "kubescribe") == OPERATOR_POOLS


def test_the_runner_networkpolicy_is_in_the_operators_namespaces(limited: tuple[str, str], cluster: Cluster) -> None:
    mine, other = limited
    policy = cluster.get("networkpolicy", "kubescribe-runner", "-n", mine)
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "runner"
    assert cluster.try_get("networkpolicy", "kubescribe-runner", "-n", other) is None
