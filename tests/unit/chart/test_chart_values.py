"""The chart's values: checked by its schema, listed in docs/chart-values.md, and carried into every pod, the runner's
included (through the operator's settings)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubescribe.api.crd import RESOURCES, build_crd
from kubescribe.operator.builders import build_runner_job, egress_rules
from kubescribe.operator.settings import OperatorSettings
from tests.unit.chart.test_chart_render import REPO, helm, objects, render

CHART = REPO / "charts/kubescribe"
GPU_POOL = REPO / "examples/values-gpu-pool.yaml"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def gpu_pool(*settings: str) -> list[dict[str, Any]]:
    command = [helm(), "template", "kubescribe", str(CHART), "-n", "kubescribe", "-f", str(GPU_POOL)]
    command += [arg for setting in settings for arg in ("--set", setting)]
    rendered = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [document for document in yaml.safe_load_all(rendered) if document]


def pod_specs(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pod spec of each Deployment, DaemonSet and Job, by name."""
    return {
        document["metadata"]["name"]: document["spec"]["template"]["spec"]
        for document in documents
        if document["kind"] in ("Deployment", "DaemonSet", "Job")
    }


def operator_env(documents: list[dict[str, Any]]) -> dict[str, str]:
    [container] = pod_specs(documents)["kubescribe-operator"]["containers"]
    return {item["name"]: item["value"] for item in container["env"] if "value" in item}


@pytest.mark.parametrize("values", [[], ["-f", str(GPU_POOL)]], ids=["defaults", "gpu-pool"])
def test_the_chart_lints_strictly(values: list[str]) -> None:
    result = subprocess.run(
        [helm(), "lint", "--strict", str(CHART), *values], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("operator.maxRuningJobs=3", "maxRuningJobs"),
        ("runner.gpuNodeSelector.pool=a100", "gpuNodeSelector"),
        ("gateway.service.typ=LoadBalancer", "typ"),
    ],
)
def test_a_misspelt_value_fails_the_render_naming_it(setting: str, named: str) -> None:
    result = render(setting, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert named in result.stderr


@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ("operator.maxRunningJobs=many", "/operator/maxRunningJobs"),
        ("runner.tolerations=NoSchedule", "/runner/tolerations"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("runner.resources.requests.cpu=lots", "/runner/resources/requests/cpu"),
        ("runner.resources.requests.memory=4Gi", "/runner/resources/requests"),
    ],
)
def test_a_value_of_the_wrong_kind_fails_the_render_naming_its_path(setting: str, path: str) -> None:
    result = render(setting, check=False)
    assert result.returncode != 0
    assert path in result.stderr


def test_the_images_default_to_the_charts_app_version() -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    documents = objects("modelCache.enabled=true")
    for name, pod in pod_specs(documents).items():
        assert pod["containers"][0]["image"] == f"kubescribe:{app_version}", name
        assert pod["containers"][0]["imagePullPolicy"] == "IfNotPresent", name
        assert "imagePullSecrets" not in pod, name
    assert operator_env(documents)["KUBESCRIBE_RUNNER_IMAGE"] == f"kubescribe-runner:{app_version}"


def test_a_digest_pins_the_images_whatever_their_tag() -> None:
    documents = objects(
        "image.repository=registry.example/ml/kubescribe",
        "image.tag=1.2.3",
        f"image.digest={DIGEST}",
        "image.pullPolicy=Always",
        "imagePullSecrets[0].name=registry-credentials",
        "runner.image.repository=registry.example/ml/kubescribe-runner",
        f"runner.image.digest={DIGEST}",
        "runner.image.pullPolicy=Never",
        "modelCache.enabled=true",
    )
    pods = pod_specs(documents)
    assert set(pods) == {"kubescribe-operator", "kubescribe-gateway", "kubescribe-uninstall", "kubescribe-model-cache"}
    for pod in pods.values():
        assert pod["containers"][0]["image"] == f"registry.example/ml/kubescribe@{DIGEST}"
        assert pod["containers"][0]["imagePullPolicy"] == "Always"
        assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    env = operator_env(documents)
    assert env["KUBESCRIBE_RUNNER_IMAGE"] == f"registry.example/ml/kubescribe-runner@{DIGEST}"
    assert env["KUBESCRIBE_RUNNER_IMAGE_PULL_POLICY"] == "Never"


def test_every_pod_requests_cpu_and_memory_and_has_a_memory_limit() -> None:
    for name, pod in pod_specs(objects("modelCache.enabled=true")).items():
        resources = pod["containers"][0]["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert "memory" in resources["limits"], name


def test_the_operator_and_the_gateway_are_placed_by_their_values() -> None:
    pods = pod_specs(gpu_pool())
    for name in ("kubescribe-operator", "kubescribe-gateway", "kubescribe-uninstall"):
        assert pods[name]["nodeSelector"] == {"cloud.example.com/node-pool": "system"}, name
    assert pods["kubescribe-model-cache"]["nodeSelector"] == {"cloud.example.com/node-pool": "gpu-a100"}
    anti_affinity = pods["kubescribe-gateway"]["affinity"]["podAntiAffinity"]
    assert anti_affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 100
    placed = pod_specs(
        objects(
            "gateway.priorityClassName=kubescribe-serving",
            "gateway.tolerations[0].key=dedicated",
            "gateway.tolerations[0].operator=Exists",
        )
    )["kubescribe-gateway"]
    assert placed["priorityClassName"] == "kubescribe-serving"
    assert placed["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]


def test_the_gpu_pools_values_place_runner_pods_through_the_operators_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in operator_env(gpu_pool()).items():
        monkeypatch.setenv(name, value)
    settings = OperatorSettings()
    tj = {
        "metadata": {"name": "talk", "namespace": "team-a", "uid": "uid-1"},
        "spec": {"source": {"s3": {"bucket": "acme-audio", "key": "team-a/talk.wav"}}, "resources": {"gpu": 2}},
    }
    pod = build_runner_job(tj, settings, egress_rules(settings, "https://10.0.0.10:443"))["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.example.com/node-pool": "gpu-a100", "nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "cloud.example.com/node-pool", "operator": "Equal", "value": "gpu-a100", "effect": "NoSchedule"},
    ]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["priorityClassName"] == "transcription"
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    [container] = pod["containers"]
    assert container["image"].startswith("registry.example.com/ml/kubescribe-runner@sha256:")
    assert container["resources"]["requests"] == {"cpu": "4", "ephemeral-storage": "20Gi", "memory": "8Gi"}
    assert container["resources"]["limits"]["cpu"] == "8"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["limits"]["rdma/rdma_shared_device_a"] == "1"


def test_the_crd_is_a_template_kept_on_uninstall_unless_crds_are_managed_apart() -> None:
    crds = {d["metadata"]["name"]: d for d in objects() if d["kind"] == "CustomResourceDefinition"}
    assert set(crds) == {resource.name for resource in RESOURCES}
    for resource in RESOURCES:
        crd = crds[resource.name]
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == "kubescribe"
        assert crd["spec"] == build_crd(resource)["spec"]
    assert not (CHART / "crds").exists()  # Helm installs crds/ once and never upgrades it
    assert [d for d in objects("crds.install=false") if d["kind"] == "CustomResourceDefinition"] == []


def test_the_notes_tell_how_to_reach_the_gateway_and_create_a_key() -> None:
    command = [helm(), "install", "kubescribe", str(CHART), "-n", "speech", "--dry-run=client"]
    notes = subprocess.run(command, capture_output=True, text=True, check=True).stdout.partition("NOTES:")[2]
    assert "kubectl -n speech port-forward service/kubescribe-gateway 8000:80" in notes
    assert "kubescribe keys create --secret-namespace speech --secret-name kubescribe-api-keys" in notes
    assert "kubescribe transcribe" in notes
    balanced = subprocess.run(
        [*command, "--set", "gateway.service.type=LoadBalancer"], capture_output=True, text=True, check=True
    ).stdout
    assert "status.loadBalancer.ingress[0].ip" in balanced


def leaf_paths(values: Any, prefix: str = "") -> list[str]:
    if isinstance(values, dict) and values:
        return [path for key, value in values.items() for path in leaf_paths(value, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


def test_the_values_reference_lists_every_value_and_is_current() -> None:
    reference = (REPO / "docs/chart-values.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    paths = leaf_paths(values)
    assert "runner.resources.requests.cpu" in paths
    for path in paths:
        parts = path.split(".")
        # A map (a nodeSelector) is one row, its keys the user's; an empty object's values have rows of their own.
        documented = [".".join(parts[:end]) for end in range(len(parts), 0, -1)]
        assert any(f"| `{value}` |" in reference for value in documented) or f"| `{path}." in reference, path
    check = subprocess.run([sys.executable, REPO / "hack/chart-values.py", "--check"], capture_output=True, check=False)
    assert check.returncode == 0, check.stderr


def test_the_reference_check_fails_on_a_stale_reference(tmp_path: Path) -> None:
    script = (REPO / "hack/chart-values.py").read_text()
    copy = tmp_path / "hack/chart-values.py"
    copy.parent.mkdir()
    copy.write_text(script)
    (tmp_path / "charts").symlink_to(REPO / "charts")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/chart-values.md").write_text("# Chart values\n")
    stale = subprocess.run([sys.executable, copy, "--check"], capture_output=True, text=True, check=False)
    assert stale.returncode == 1
    assert "out of date" in stale.stderr
    subprocess.run([sys.executable, copy], check=True)
    assert subprocess.run([sys.executable, copy, "--check"], check=False).returncode == 0
