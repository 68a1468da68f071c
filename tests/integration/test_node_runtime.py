"""The local node runs a container from its image, as a kubelet and a container runtime do: the image is pulled from
the cluster's registry under the pod's pull policy, the container sees the image's files as `/` and runs as its
namespaces' PID 1 with the image's user, entrypoint and variables (the pod's win), its volumes and its ServiceAccount
token mounted; an image that cannot be pulled leaves the pod in ErrImagePull, then ImagePullBackOff."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    RESTRICTED_CONTAINER_SECURITY,
    RESTRICTED_POD_SECURITY,
    Cluster,
    wait_for,
)
from tests.oci import Pusher, directory, regular, symlink, tarball

BUSYBOX_TOOLS = ("sh", "cat", "echo", "id", "hostname", "ls", "touch", "test", "sleep", "pwd", "ps", "env")
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:65532:65532:app:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:65532:\n"


@pytest.fixture(scope="session")
def busybox(cluster: Cluster) -> str:
    """A small image on the cluster's registry: busybox, user 65532 (`app`), a marker file in its working directory
    and a second layer that deletes a file of the first (a whiteout). Tag `named-user` names its user `app`."""
    busybox_binary = shutil.which("busybox")
    assert busybox_binary, "busybox is installed with the Debian packages the tests need"
    base = tarball(
        directory("bin"),
        regular("bin/busybox", Path(busybox_binary).read_bytes(), mode=0o755),
        *(symlink(f"bin/{tool}", "busybox") for tool in BUSYBOX_TOOLS),
        directory("etc"),
        regular("etc/passwd", PASSWD.encode()),
        regular("etc/group", GROUP.encode()),
        directory("srv"),
        directory("srv/app"),
        regular("srv/app/marker", b"from the image\n"),
        regular("srv/app/removed-later", b"deleted by the next layer\n"),
    )
    whiteout = tarball(directory("srv"), directory("srv/app"), regular("srv/app/.wh.removed-later"))
    registry = cluster.env["KUBESCRIBE_REGISTRY"]
    config = {
        "Entrypoint": ["sh", "-c"],
        "Cmd": ["echo the command of the image"],
        "Env": ["PATH=/bin", "GREETING=from the image", "LEVEL=image"],
        "User": "65532",
        "WorkingDir": "/srv/app",
    }
    pusher = Pusher(f"http://{registry}")
    pusher.image("test/busybox", [base, whiteout], config, tag="1")
    pusher.image("test/busybox", [base, whiteout], {**config, "User": "app"}, tag="named-user")
    return f"{registry}/test/busybox:1"


def busybox_pod(namespace: str, image: str, **container: Any) -> dict[str, Any]:
    name = f"rt-{uuid.uuid4().hex[:6]}"
    security = {**RESTRICTED_POD_SECURITY}
    security.pop("runAsUser")  # the image's user
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": security,
            "containers": [
                {"name": "main", "image": image, "securityContext": RESTRICTED_CONTAINER_SECURITY, **container}
            ],
        },
    }


def container_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """The status of the pod's first container, {} until it has one."""
    found = cluster.try_get("pod", name, "-n", namespace)
    statuses = (found or {}).get("status", {}).get("containerStatuses", [])
    return statuses[0] if statuses else {}


def finished(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    state: dict[str, Any] = wait_for(
        lambda: container_status(cluster, namespace, name).get("state", {}).get("terminated"),
        90,
        f"pod {name} to finish",
    )
    return state


def logs(cluster: Cluster, namespace: str, name: str, *options: str, container: str = "main") -> str:
    return cluster.kubectl("logs", name, "-n", namespace, "-c", container, *options).stdout


def test_a_container_runs_from_its_image_as_its_user_with_its_variables(
    cluster: Cluster, namespace: str, busybox: str
) -> None:
    script = (
        "id -u; pwd; cat marker; test -e removed-later || echo whiteout applied; echo $GREETING $LEVEL; hostname;"
        " echo pid $$$$; ls /work 2>&1; echo done > /dev/termination-log"  # $$ is how a pod spec writes $
    )
    pod = busybox_pod(namespace, busybox, args=[script], env=[{"name": "LEVEL", "value": "pod"}])
    cluster.apply(pod)
    name = pod["metadata"]["name"]
    state = finished(cluster, namespace, name)
    lines = logs(cluster, namespace, name).splitlines()
    assert (state["exitCode"], state.get("message")) == (0, "done\n"), lines
    assert lines == [
        "65532",
        "/srv/app",
        "from the image",
        "whiteout applied",
        "from the image pod",
        name,
        "pid 1",
        "ls: /work: No such file or directory",
    ]
    status = container_status(cluster, namespace, name)
    assert status["imageID"].startswith(busybox.rsplit(":", 1)[0] + "@sha256:")


def test_an_exec_probe_runs_in_the_container_as_its_user(cluster: Cluster, namespace: str, busybox: str) -> None:
    inside = (
        'echo "$(id -u) $(pwd) $GREETING $(hostname) $$"; test "$(id -u)" = 65532 && test "$(pwd)" = /srv/app'
        ' && test "$GREETING" = "from the image" && test -f marker && test "$(hostname)" = "$HOSTNAME"'
        ' && test -d /proc/$$ && test "$(cat /proc/1/comm)" = sleep'
    )
    probe = {"exec": {"command": ["sh", "-c", inside]}, "periodSeconds": 1}
    pod = busybox_pod(namespace, busybox, command=["sleep", "600"], readinessProbe=probe)
    cluster.apply(pod)
    name = pod["metadata"]["name"]
    ready = cluster.kubectl(
        "wait", "-n", namespace, f"pod/{name}", "--for=condition=Ready", "--timeout=60s", check=False
    )
    events = cluster.get("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]
    assert ready.returncode == 0, [event["message"] for event in events]


def test_the_images_command_runs_when_the_pod_names_none(cluster: Cluster, namespace: str, busybox: str) -> None:
    pod = busybox_pod(namespace, busybox)
    cluster.apply(pod)
    assert finished(cluster, namespace, pod["metadata"]["name"])["exitCode"] == 0
    assert logs(cluster, namespace, pod["metadata"]["name"]) == "the command of the image\n"


def test_volumes_and_the_service_account_token_are_mounted_and_the_root_can_be_read_only(
    cluster: Cluster, namespace: str, busybox: str
) -> None:
    script = (
        "cd /var/run/secrets/kubernetes.io/serviceaccount && cat namespace && echo && test -s token"
        " && test -s ca.crt && echo token readable; echo shared > /data/file; touch /x 2>/dev/null || echo read-only"
    )
    pod = busybox_pod(
        namespace,
        busybox,
        args=[script],
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
        securityContext={**RESTRICTED_CONTAINER_SECURITY, "readOnlyRootFilesystem": True},
    )
    reader = {
        "name": "reader",
        "image": busybox,
        "args": ["sleep 1; until test -s /data/file; do sleep 0.2; done; cat /data/file"],
        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
    }
    pod["spec"]["containers"].append(reader)
    pod["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    cluster.apply(pod)
    name = pod["metadata"]["name"]
    phase = wait_for(
        lambda: (
            cluster.get("pod", name, "-n", namespace)["status"].get("phase") in ("Succeeded", "Failed")
            and cluster.get("pod", name, "-n", namespace)["status"]["phase"]
        ),
        90,
        "the pod to finish",
    )
    assert phase == "Succeeded"
    assert logs(cluster, namespace, name).splitlines() == [namespace, "token readable", "read-only"]
    assert logs(cluster, namespace, name, container="reader") == "shared\n"


def test_a_command_not_in_the_image_is_a_start_error(cluster: Cluster, namespace: str, busybox: str) -> None:
    pod = busybox_pod(namespace, busybox, command=["python3", "-V"])
    cluster.apply(pod)
    state = finished(cluster, namespace, pod["metadata"]["name"])
    assert (state["exitCode"], state["reason"]) == (128, "StartError")
    assert state["message"] == 'exec: "python3": executable file not found in $PATH'


def test_run_as_non_root_refuses_an_image_user_it_cannot_verify(cluster: Cluster, namespace: str, busybox: str) -> None:
    pod = busybox_pod(namespace, busybox.replace(":1", ":named-user"), args=["id"])
    cluster.apply(pod)
    name = pod["metadata"]["name"]

    def waiting() -> dict[str, Any] | None:
        state = container_status(cluster, namespace, name).get("state", {}).get("waiting", {})
        return state if state.get("reason") == "CreateContainerConfigError" else None

    assert "cannot verify user is non-root" in wait_for(waiting, 60, "the refusal")["message"]


def test_a_missing_image_backs_off_as_a_kubelet_does(cluster: Cluster, namespace: str) -> None:
    missing = f"{cluster.env['KUBESCRIBE_REGISTRY']}/test/missing:1"
    pod = busybox_pod(namespace, missing, args=["true"])
    cluster.apply(pod)
    name = pod["metadata"]["name"]
    reasons: set[str] = set()

    def backing_off() -> bool:
        reason = container_status(cluster, namespace, name).get("state", {}).get("waiting", {}).get("reason", "")
        reasons.add(reason)
        return reason == "ImagePullBackOff"

    wait_for(backing_off, 90, "ImagePullBackOff")
    assert "ErrImagePull" in reasons
    events = cluster.get("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]
    failed = [e["message"] for e in events if e["reason"] == "Failed"]
    assert failed and missing in failed[0]


def test_kubectl_logs_reads_the_current_and_the_previous_run_and_follows(
    cluster: Cluster, namespace: str, busybox: str
) -> None:
    script = (
        "if test -e /data/ran; then echo second run; for i in 1 2 3; do echo line $i; sleep 1; done;"
        " else touch /data/ran; echo first run; exit 1; fi"
    )
    pod = busybox_pod(namespace, busybox, args=[script], volumeMounts=[{"name": "data", "mountPath": "/data"}])
    pod["spec"]["restartPolicy"] = "OnFailure"
    pod["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    cluster.apply(pod)
    name = pod["metadata"]["name"]

    def second_run() -> bool:
        status = container_status(cluster, namespace, name)
        return status.get("restartCount") == 1 and "running" in status["state"]

    wait_for(second_run, 60, "the container's second run")
    assert logs(cluster, namespace, name, "--previous") == "first run\n"
    assert logs(cluster, namespace, name, "-f") == "second run\nline 1\nline 2\nline 3\n"
    assert logs(cluster, namespace, name, "--tail=1") == "line 3\n"
