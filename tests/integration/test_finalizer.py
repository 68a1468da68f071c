"""The finalizer never holds a job forever: not when the store refuses the operator (it gives up after
`operator.cleanupTimeoutSeconds`, with a Warning Event), nor once the operator is uninstalled (the chart's hook
removes it). Both change the shared release as they need it and restore it after."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from localcluster.cluster import free_port
from tests.integration.conftest import (
    REPO,
    Cluster,
    Kubescribe,
    create_restricted_namespace,
    scratch_namespace,
    wait_for,
)

FINALIZER = "kubescribe.io/cleanup"
REFUSED_SECRET = "kubescribe-s3-refused"
CLEANUP_TIMEOUT_SECONDS = 15


def submit_held_job(kubescribe: Kubescribe, namespace: str, name: str) -> None:
    """A job the operator has put its finalizer on, whose transcripts would be absent.json and absent.txt."""
    kubescribe.submit(
        namespace,
        name,
        source={"s3": {"bucket": "audio", "key": f"{namespace}/absent.wav"}},
        outputs={"formats": ["json", "txt"]},
    )
    wait_for(
        lambda: FINALIZER in ((kubescribe.job(namespace, name) or {}).get("metadata", {}).get("finalizers") or []),
        60,
        f"the finalizer on {namespace}/{name}",
    )


@pytest.fixture
def refused_by_the_store(kubescribe: Kubescribe, cluster: Cluster) -> Iterator[None]:
    """The operator reinstalled with keys the store refuses, and a short cleanup timeout; no gateway meanwhile, which
    is never ready with such keys."""
    cluster.kubectl("delete", "secret", REFUSED_SECRET, "-n", kubescribe.namespace, "--ignore-not-found")
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        REFUSED_SECRET,
        "-n",
        kubescribe.namespace,
        "--from-literal=AWS_ACCESS_KEY_ID=nobody",
        "--from-literal=AWS_SECRET_ACCESS_KEY=not-the-password",
    )
    kubescribe.install(
        **{
            "s3.existingSecret": REFUSED_SECRET,
            "operator.cleanupTimeoutSeconds": str(CLEANUP_TIMEOUT_SECONDS),
            "gateway.enabled": "false",
        }
    )
    try:
        yield
    finally:
        kubescribe.install()


def test_a_job_whose_objects_the_store_refuses_to_delete_goes_with_a_warning(
    refused_by_the_store: None, kubescribe: Kubescribe, cluster: Cluster
) -> None:
    with scratch_namespace(cluster) as namespace:
        submit_held_job(kubescribe, namespace, "stuck")
        cluster.kubectl("delete", "tj", "stuck", "-n", namespace, "--wait=false")
        wait_for(lambda: kubescribe.job(namespace, "stuck") is None, 180, "the job to go")
        message = wait_for(lambda: kubescribe.warnings(namespace, "stuck").get("CleanupAbandoned"), 30, "the warning")
    expected = (
        rf"the store did not delete the job's objects within {CLEANUP_TIMEOUT_SECONDS} s \(InvalidAccessKeyId\): "
        rf"the job is gone, 2 objects left in the store: s3://transcripts/{namespace}/stuck/absent\.json, "
        rf"s3://transcripts/{namespace}/stuck/absent\.txt"
    )
    assert re.fullmatch(expected, message), message
    assert "not-the-password" not in message


@pytest.fixture
def scratch_release(kubescribe: Kubescribe, cluster: Cluster) -> Iterator[tuple[str, str]]:
    """(a release of its own, in its own namespace, the namespace only its operator watches). The shared release is
    limited to another namespace meanwhile, so that no other operator acts on the scratch release's jobs."""
    suffix = uuid.uuid4().hex[:8]
    release, watched, elsewhere = f"scratch-{suffix}", f"watched-{suffix}", f"elsewhere-{suffix}"
    for name in (release, watched, elsewhere):
        create_restricted_namespace(cluster, name)
    limited = {"networkPolicy.apiServer.cidrs": "{127.0.0.1/32}"}
    kubescribe.install(**limited, **{"operator.namespaces": f"{{{elsewhere}}}"})
    cluster.create_store_secret(release)
    values = {
        **kubescribe.values,
        **limited,
        "operator.namespaces": f"{{{watched}}}",
        "operator.ports.health": str(free_port()),
        "operator.ports.metrics": str(free_port()),
        "gateway.enabled": "false",
        "storage.admissionPolicy": "false",
        # The CRD is the shared release's.
        "crds.install": "false",
    }
    settings = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    cluster.run("helm", "install", release, str(REPO / "charts/kubescribe"), "-n", release, *settings, "--wait")
    try:
        yield release, watched
    finally:
        cluster.run("helm", "uninstall", release, "-n", release, "--wait", check=False)
        kubescribe.install()
        for name in (release, watched, elsewhere):
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_after_the_operator_is_uninstalled_a_namespace_with_jobs_can_be_deleted(
    scratch_release: tuple[str, str], kubescribe: Kubescribe, cluster: Cluster
) -> None:
    release, namespace = scratch_release
    submit_held_job(kubescribe, namespace, "left")
    cluster.run("helm", "uninstall", release, "-n", release, "--wait", "--timeout", "3m")
    assert cluster.try_get("deployment", f"{release}-operator", "-n", release) is None
    left = kubescribe.job(namespace, "left")
    assert left is not None
    assert FINALIZER not in (left["metadata"].get("finalizers") or [])
    cluster.leaks.record_namespace(cluster, namespace)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
    wait_for(lambda: cluster.try_get("namespace", namespace) is None, 180, f"namespace {namespace} to go")
    assert cluster.try_get("serviceaccount", f"{release}-uninstall", "-n", release) is None
    assert cluster.try_get("clusterrole", f"{release}-uninstall") is None
