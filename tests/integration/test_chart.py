"""The Helm chart against the real API server: what it renders is valid there, it installs from its package, its CRD
is upgraded with a release and outlives it, and its runner values place real runner pods."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.cluster import free_port
from tests.integration.conftest import (
    CRD_TEMPLATE,
    REPO,
    Cluster,
    Kubescribe,
    scratch_namespace,
    wait_for,
)
from tests.integration.speech import speak

CHART = REPO / "charts/kubescribe"
GPU_POOL = REPO / "examples/values-gpu-pool.yaml"
CRD = "crd/transcriptionjobs.kubescribe.io"
ADDED_COLUMN = "    - name: Attempts\n      type: integer\n      jsonPath: .status.attempts\n"
SENTENCE = "The runner runs where the chart puts it."
NEVER_SCHEDULED = {"gpu": 0, "nodeSelector": {"kubescribe.io/no-such-node": "true"}}


def documents(text: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(text) if document]


@pytest.mark.parametrize(
    "options",
    [
        [],
        [
            "-f",
            str(GPU_POOL),
            "--set",
            "kueue.enabled=true,gateway.service.type=LoadBalancer,storage.grants[0].name=models",
            "--set",
            "storage.grants[0].location=s3://models/,uninstallHook.resources.limits.cpu=200m",
        ],
    ],
    ids=["defaults", "every-option"],
)
def test_every_rendered_manifest_passes_the_api_servers_dry_run(
    cluster: Cluster, namespace: str, options: list[str]
) -> None:
    # The test's namespace stands for the release namespace, the tenants' and the operator's.
    where = ["--set", f"tenantNamespaces={{{namespace}}},operator.namespaces={{{namespace}}}"] if options else []
    rendered = cluster.run("helm", "template", "dry", str(CHART), "-n", namespace, *options, *where).stdout
    manifests = documents(rendered)
    kinds = {manifest["kind"] for manifest in manifests}
    assert {"CustomResourceDefinition", "Deployment", "Job", "ValidatingAdmissionPolicy"} <= kinds
    if options:
        assert {"NetworkPolicy", "Namespace"} <= kinds
    result = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(manifests)


def changed_chart(tmp_path: Path) -> Path:
    """The chart as a next version would be: version 0.1.1, its CRD with one more printer column."""
    chart = tmp_path / "kubescribe"
    shutil.copytree(CHART, chart)
    metadata = yaml.safe_load((chart / "Chart.yaml").read_text())
    (chart / "Chart.yaml").write_text(yaml.safe_dump({**metadata, "version": "0.1.1"}, sort_keys=False))
    template = chart / CRD_TEMPLATE
    text = template.read_text()
    assert "    additionalPrinterColumns:\n" in text
    template.write_text(
        text.replace("    additionalPrinterColumns:\n", "    additionalPrinterColumns:\n" + ADDED_COLUMN)
    )
    return chart


def owner(cluster: Cluster) -> str:
    annotations: dict[str, str] = cluster.get(CRD)["metadata"].get("annotations", {})
    return annotations.get("meta.helm.sh/release-name", "")


def columns(cluster: Cluster, namespace: str) -> list[str]:
    return cluster.kubectl("get", "tj", "-n", namespace).stdout.splitlines()[0].split()


@pytest.fixture
def release_namespace(kubescribe: Kubescribe) -> Iterator[str]:
    """A namespace for a second release, with the store's credentials."""
    cluster = kubescribe.cluster
    with scratch_namespace(cluster, "chart") as name:
        cluster.create_store_secret(name)
        yield name


@pytest.fixture
def crd_restored(kubescribe: Kubescribe) -> Iterator[None]:
    """Gives the CRD back to the session's release, as it was, whatever the test did with it."""
    yield
    kubescribe.cluster.run(
        "helm",
        "upgrade",
        kubescribe.release,
        str(CHART),
        "-n",
        kubescribe.namespace,
        "--reuse-values",
        "--take-ownership",
        "--wait",
        "--timeout",
        "2m",
    )
    assert owner(kubescribe.cluster) == kubescribe.release


@pytest.mark.usefixtures("crd_restored")
def test_a_packaged_release_upgrades_its_crd_and_leaves_it_and_the_jobs_when_uninstalled(
    kubescribe: Kubescribe, release_namespace: str, namespace: str, tmp_path: Path
) -> None:
    cluster = kubescribe.cluster
    release = "kubescribe-chart"
    cluster.run("helm", "package", str(CHART), "-d", str(tmp_path / "v1"))
    cluster.run("helm", "package", str(changed_chart(tmp_path)), "-d", str(tmp_path / "v2"))
    first, second = tmp_path / "v1/kubescribe-0.1.0.tgz", tmp_path / "v2/kubescribe-0.1.1.tgz"
    # The second release runs an operator of its own for `namespace`; it takes the CRD, which one release owns.
    settings = {
        "s3.endpoint": kubescribe.values["s3.endpoint"],
        "operator.ports.health": str(free_port()),
        "operator.ports.metrics": str(free_port()),
        "operator.namespaces": f"{{{namespace}}}",
        "networkPolicy.apiServer.cidrs": "{127.0.0.1/32}",
        "gateway.enabled": "false",
        "storage.admissionPolicy": "false",
        **cluster.images,
    }
    flags = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    crd_uid = cluster.get(CRD)["metadata"]["uid"]

    installed = cluster.run(
        "helm", "install", release, str(first), "-n", release_namespace, *flags, "--take-ownership", "--wait"
    )
    assert "kubescribe" in installed.stdout
    operator = cluster.get("deployment", f"{release}-operator", "-n", release_namespace)
    assert operator["status"]["readyReplicas"] == 1
    assert owner(cluster) == release
    kubescribe.submit(namespace, "kept", source={"url": "https://example.org/a.wav"}, resources=NEVER_SCHEDULED)
    job_uid = cluster.get("tj", "kept", "-n", namespace)["metadata"]["uid"]
    assert "ATTEMPTS" not in columns(cluster, namespace)

    cluster.run("helm", "upgrade", release, str(second), "-n", release_namespace, *flags, "--wait")
    printer_columns = cluster.get(CRD)["spec"]["versions"][0]["additionalPrinterColumns"]
    assert printer_columns[0] == {"name": "Attempts", "type": "integer", "jsonPath": ".status.attempts"}
    assert columns(cluster, namespace)[:2] == ["NAME", "ATTEMPTS"]
    assert cluster.get("tj", "kept", "-n", namespace)["metadata"]["uid"] == job_uid

    cluster.run("helm", "uninstall", release, "-n", release_namespace, "--wait", "--timeout", "2m")
    assert cluster.try_get("deployment", f"{release}-operator", "-n", release_namespace) is None
    assert cluster.get(CRD)["metadata"]["uid"] == crd_uid
    assert cluster.get("tj", "kept", "-n", namespace)["metadata"]["uid"] == job_uid


@pytest.fixture
def gpu_placement(kubescribe: Kubescribe) -> Iterator[str]:
    """The session's release with runner placement values, and a RuntimeClass and a PriorityClass for them."""
    cluster = kubescribe.cluster
    name = "kubescribe-chart-test"
    cluster.apply(
        {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name}, "handler": "runc"},
        {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": 1000},
    )
    kubescribe.install(
        **{
            "runner.nodeSelector.kubernetes\\.io/os": "linux",
            "runner.tolerations[0].key": "example.com/gpu-pool",
            "runner.tolerations[0].operator": "Exists",
            "runner.tolerations[0].effect": "NoSchedule",
            "runner.runtimeClassName": name,
            "runner.priorityClassName": name,
            "runner.resources.requests.cpu": "200m",
        }
    )
    try:
        yield name
    finally:
        kubescribe.install()
        cluster.kubectl("delete", "runtimeclass,priorityclass", name, check=False)


def test_runner_pods_with_gpus_are_placed_by_the_charts_runner_values(
    kubescribe: Kubescribe, gpu_placement: str, namespace: str, speech_dir: Path
) -> None:
    wav = speak(speech_dir, "placed", SENTENCE)
    kubescribe.submit_audio(namespace, "placed", wav, resources={"gpu": 1})
    kubescribe.submit_audio(namespace, "on-cpu", wav, resources={"gpu": 0})
    placed = wait_for(lambda: kubescribe.runner_pods(namespace, "placed"), 60, "the GPU job's runner pod")[0]
    on_cpu = wait_for(lambda: kubescribe.runner_pods(namespace, "on-cpu"), 60, "the CPU job's runner pod")[0]

    spec = placed["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert {"key": "example.com/gpu-pool", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["runtimeClassName"] == gpu_placement
    assert spec["priorityClassName"] == gpu_placement
    assert spec["priority"] == 1000
    [container] = spec["containers"]
    assert container["resources"]["requests"]["cpu"] == "200m"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "runtimeClassName" not in on_cpu["spec"]
    assert "nodeSelector" not in on_cpu["spec"]
    assert on_cpu["spec"]["priorityClassName"] == gpu_placement

    for name in ("placed", "on-cpu"):
        status = kubescribe.wait_finished(namespace, name)["status"]
        assert status["phase"] == "Succeeded", status.get("message")


def test_the_session_release_owns_the_crds_and_keeps_them_on_uninstall(kubescribe: Kubescribe) -> None:
    cluster = kubescribe.cluster
    assert owner(cluster) == kubescribe.release
    rendered = cluster.run("helm", "get", "manifest", kubescribe.release, "-n", kubescribe.namespace).stdout
    crds = [document for document in documents(rendered) if document["kind"] == "CustomResourceDefinition"]
    assert sorted(crd["metadata"]["name"] for crd in crds) == [
        "runnerassignments.kubescribe.io",
        "runnerpools.kubescribe.io",
        "transcriptionjobs.kubescribe.io",
    ]
    assert all(crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for crd in crds)
