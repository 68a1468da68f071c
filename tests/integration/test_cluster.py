"""The local cluster behaves as a Kubernetes cluster with two GPU nodes does."""

from __future__ import annotations

import json
import textwrap
import urllib.request
import uuid

from localcluster import processes
from localcluster.cluster import free_port
from tests.integration.conftest import Cluster, pinned_versions, running_pid, wait_for


def phase(cluster: Cluster, namespace: str, name: str) -> str | None:
    found = cluster.try_get("pod", name, "-n", namespace)
    return found["status"].get("phase") if found else None


def terminated(cluster: Cluster, namespace: str, name: str) -> dict | None:
    found = cluster.try_get("pod", name, "-n", namespace)
    statuses = (found or {}).get("status", {}).get("containerStatuses", [])
    return statuses[0]["state"].get("terminated") if statuses else None


def test_kubectl_reports_the_pinned_server_version(cluster: Cluster) -> None:
    versions = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    pinned = pinned_versions()["KUBERNETES_VERSION"]
    assert versions["serverVersion"]["gitVersion"] == pinned
    assert versions["clientVersion"]["gitVersion"] == pinned
    assert versions["serverVersion"]["gitTreeState"] == "clean"


def test_two_ready_nodes_each_with_two_gpus(cluster: Cluster) -> None:
    nodes = cluster.get("nodes")["items"]
    assert len(nodes) == 2
    for node in nodes:
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "2"
        assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert "nvidia.com/gpu" in cluster.kubectl("describe", "nodes").stdout


def test_a_job_writes_an_object_to_minio(cluster: Cluster, namespace: str) -> None:
    s3 = cluster.s3()
    bucket, key = f"job-{uuid.uuid4().hex[:8]}", "greetings/hello.txt"
    s3.make_bucket(bucket)
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "s3",
        "-n",
        namespace,
        f"--from-literal=accessKey={cluster.state.minio_user}",
        f"--from-literal=secretKey={cluster.state.minio_password}",
    )
    cluster.kubectl(
        "create",
        "configmap",
        "s3",
        "-n",
        namespace,
        f"--from-literal=endpoint={cluster.local.s3_url(cluster.state).removeprefix('http://')}",
    )
    script = textwrap.dedent(f"""
        import io, os
        from minio import Minio
        s3 = Minio(os.environ["S3_ENDPOINT"], os.environ["ACCESS_KEY"], os.environ["SECRET_KEY"], secure=False)
        body = ("hello from " + os.environ["POD_NAME"]).encode()
        s3.put_object("{bucket}", "{key}", io.BytesIO(body), len(body))
    """)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "writer", "namespace": namespace},
        "spec": {
            "backoffLimit": 0,
            "template": cluster.pod_template(
                script,
                container={
                    "env": [
                        {"name": "S3_ENDPOINT", "valueFrom": {"configMapKeyRef": {"name": "s3", "key": "endpoint"}}},
                        {"name": "ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "accessKey"}}},
                        {"name": "SECRET_KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secretKey"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    ]
                },
            ),
        },
    }
    cluster.apply(job)
    cluster.kubectl("wait", "-n", namespace, "job/writer", "--for=condition=Complete", "--timeout=90s")
    body = s3.get_object(bucket, key).read().decode()
    assert body.startswith("hello from writer-")


def test_gpu_requests_beyond_a_node_stay_pending(cluster: Cluster, namespace: str) -> None:
    def gpus(count: int) -> dict:
        return {"resources": {"limits": {"nvidia.com/gpu": count}}}

    cluster.apply(
        cluster.pod("three-gpus", namespace, "print('never')", container=gpus(3)),
        cluster.pod("two-gpus", namespace, "print('ran')", container=gpus(2)),
    )
    wait_for(lambda: phase(cluster, namespace, "two-gpus") == "Succeeded", 60, "the 2-GPU pod to succeed")

    def failed_scheduling() -> list[str]:
        events = cluster.get("events", "-n", namespace, "--field-selector", "involvedObject.name=three-gpus")
        return [e["message"] for e in events["items"] if e["reason"] == "FailedScheduling"]

    messages = wait_for(failed_scheduling, 30, "a FailedScheduling event")
    assert "Insufficient nvidia.com/gpu" in messages[0]
    assert phase(cluster, namespace, "three-gpus") == "Pending"


def test_exit_code_and_termination_message_are_reported(cluster: Cluster, namespace: str) -> None:
    writes_message = textwrap.dedent("""
        import pathlib
        pathlib.Path("/dev/termination-log").write_text("the audio is empty")
        raise SystemExit(3)
    """)
    falls_back_to_logs = "import sys; print('decoder said no', file=sys.stderr); sys.exit(4)"
    cluster.apply(
        cluster.pod("message", namespace, writes_message),
        cluster.pod(
            "fallback", namespace, falls_back_to_logs, container={"terminationMessagePolicy": "FallbackToLogsOnError"}
        ),
    )
    state = wait_for(lambda: terminated(cluster, namespace, "message"), 60, "the container to exit")
    assert state["exitCode"] == 3
    assert state["reason"] == "Error"
    assert state["message"] == "the audio is empty"
    assert phase(cluster, namespace, "message") == "Failed"
    state = wait_for(lambda: terminated(cluster, namespace, "fallback"), 60, "the container to exit")
    assert state["exitCode"] == 4
    assert "decoder said no" in state["message"]


def test_a_job_with_backoff_limit_one_runs_twice_then_fails(cluster: Cluster, namespace: str) -> None:
    template = cluster.pod_template("raise SystemExit(1)")
    cluster.apply(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "flaky", "namespace": namespace},
            "spec": {"backoffLimit": 1, "template": template},
        }
    )
    cluster.kubectl("wait", "-n", namespace, "job/flaky", "--for=condition=Failed", "--timeout=120s")
    job = cluster.get("job", "flaky", "-n", namespace)
    assert job["status"]["failed"] == 2
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    pods = cluster.get("pods", "-n", namespace, "-l", "job-name=flaky")["items"]
    assert sorted(p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods) == [1, 1]


def test_active_deadline_fails_the_pod(cluster: Cluster, namespace: str) -> None:
    cluster.apply(cluster.pod("slow", namespace, "import time; time.sleep(600)", activeDeadlineSeconds=3))
    wait_for(lambda: phase(cluster, namespace, "slow") == "Failed", 60, "the pod to fail")
    assert cluster.get("pod", "slow", "-n", namespace)["status"]["reason"] == "DeadlineExceeded"


def test_deleting_an_owner_deletes_its_pods_and_stops_their_processes(cluster: Cluster, namespace: str) -> None:
    template = cluster.pod_template("import time; time.sleep(3600)", labels={"app": "sleeper"}, restartPolicy="Always")
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "sleeper", "namespace": namespace},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "sleeper"}}, "template": template},
        }
    )

    def running_pids() -> list[int]:
        pods = cluster.get("pods", "-n", namespace, "-l", "app=sleeper")["items"]
        pids = [running_pid(p) for p in pods]
        return pids if len(pids) == 2 and None not in pids else []

    pids = wait_for(running_pids, 60, "two running pods")
    assert all(processes.is_alive(pid) for pid in pids)
    cluster.kubectl("delete", "deployment", "sleeper", "-n", namespace, "--wait=false")
    wait_for(
        lambda: not cluster.get("pods", "-n", namespace, "-l", "app=sleeper")["items"],
        90,
        "the garbage collector to delete the pods",
    )
    assert not cluster.try_get("replicaset", "-n", namespace, "-l", "app=sleeper")["items"]
    assert not [pid for pid in pids if processes.is_alive(pid)]


def test_a_service_account_acts_with_its_own_rbac(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    lists_pods = textwrap.dedent("""
        import os, pathlib
        from kubernetes import client, config
        from kubernetes.client.rest import ApiException
        config.load_incluster_config()
        message = pathlib.Path("/dev/termination-log")
        try:
            pods = client.CoreV1Api().list_namespaced_pod(os.environ["NAMESPACE"])
        except ApiException as error:
            message.write_text(str(error.status))
            raise SystemExit(1)
        message.write_text(f"listed {len(pods.items)}")
    """)

    def run(name: str) -> dict:
        spec = cluster.pod(
            name,
            namespace,
            lists_pods,
            serviceAccountName="reader",
            container={"env": [{"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]},
        )
        cluster.apply(spec)
        return wait_for(lambda: terminated(cluster, namespace, name), 60, f"{name} to finish")

    denied = run("before-binding")
    assert (denied["exitCode"], denied["message"]) == (1, "403")

    cluster.kubectl("create", "role", "pod-reader", "-n", namespace, "--verb=list", "--resource=pods")
    cluster.kubectl(
        "create", "rolebinding", "reader", "-n", namespace, "--role=pod-reader", f"--serviceaccount={namespace}:reader"
    )
    allowed = run("after-binding")
    assert allowed["exitCode"] == 0
    assert allowed["message"].startswith("listed ")


FLAGS_SERVER = textwrap.dedent("""
    import http.server, sys
    flags = set()
    class Flags(http.server.BaseHTTPRequestHandler):
        # GET /<flag> answers 200 while the flag is set, else 503; PUT /<flag> sets it, DELETE clears it.
        def do_GET(self):
            self.answer(200 if self.path in flags else 503)
        def do_PUT(self):
            flags.add(self.path)
            self.answer(204)
        def do_DELETE(self):
            flags.discard(self.path)
            self.answer(204)
        def answer(self, code):
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
        def log_message(self, *args):
            pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Flags).serve_forever()
""")


def flags_pod(cluster: Cluster, name: str, namespace: str, port: int, **probes: dict) -> dict:
    """A pod serving FLAGS_SERVER on `port` (its container port `http`; pods share the host's network)."""
    spec = cluster.pod(
        name, namespace, FLAGS_SERVER, container={"ports": [{"name": "http", "containerPort": port}], **probes}
    )
    spec["spec"]["containers"][0]["command"].append(str(port))
    return spec


def flag(port: int, method: str, name: str) -> None:
    def sent() -> bool:
        try:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/{name}", method=method), timeout=5)
        except OSError:
            return False
        return True

    wait_for(sent, 60, f"{method} /{name} to reach the pod")


def http_probe(path: str, **fields: int) -> dict:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": 1, **fields}


def container_status(cluster: Cluster, namespace: str, name: str) -> dict:
    found = cluster.try_get("pod", name, "-n", namespace)
    statuses = (found or {}).get("status", {}).get("containerStatuses", [])
    return statuses[0] if statuses else {}


def pod_ready(cluster: Cluster, namespace: str, name: str) -> bool:
    conditions = cluster.get("pod", name, "-n", namespace)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def event_messages(cluster: Cluster, namespace: str, name: str, reason: str) -> list[str]:
    selector = f"involvedObject.name={name},reason={reason}"
    return [e["message"] for e in cluster.get("events", "-n", namespace, "--field-selector", selector)["items"]]


def test_a_readiness_probe_decides_when_the_pod_is_ready(cluster: Cluster, namespace: str) -> None:
    port = free_port()
    cluster.apply(
        flags_pod(cluster, "server", namespace, port, readinessProbe=http_probe("/ready", failureThreshold=1))
    )
    failed = "Readiness probe failed: HTTP probe failed with statuscode: 503"
    wait_for(
        lambda: failed in event_messages(cluster, namespace, "server", "Unhealthy"), 60, "a failed readiness probe"
    )
    status = container_status(cluster, namespace, "server")
    assert "running" in status["state"]
    assert (status["started"], status["ready"]) == (True, False)
    assert not pod_ready(cluster, namespace, "server")

    flag(port, "PUT", "ready")
    cluster.kubectl("wait", "-n", namespace, "pod/server", "--for=condition=Ready", "--timeout=30s")
    assert container_status(cluster, namespace, "server")["ready"]
    flag(port, "DELETE", "ready")
    cluster.kubectl("wait", "-n", namespace, "pod/server", "--for=condition=Ready=false", "--timeout=30s")
    assert cluster.get("pod", "server", "-n", namespace)["status"]["phase"] == "Running"


def test_a_container_that_fails_its_liveness_probe_is_restarted(cluster: Cluster, namespace: str) -> None:
    # The exec probe runs in the container: with its variables, and its files (the emptyDir at /scratch).
    script = (
        "import pathlib, time; alive = pathlib.Path('/scratch/alive'); alive.touch(); time.sleep(3); alive.unlink()"
    )
    check = "import os, sys; sys.exit(0 if os.path.exists('/scratch/alive') else 1)"
    liveness = {
        "exec": {"command": ["python", "-c", check]},
        "periodSeconds": 1,
        "failureThreshold": 2,
        "terminationGracePeriodSeconds": 2,
    }
    cluster.apply(
        cluster.pod(
            "forgetful",
            namespace,
            script + "; time.sleep(3600)",
            restartPolicy="Always",
            volumes=[{"name": "scratch", "emptyDir": {}}],
            container={"livenessProbe": liveness, "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]},
        )
    )
    status = wait_for(
        lambda: (s := container_status(cluster, namespace, "forgetful")).get("restartCount", 0) >= 1 and s,
        90,
        "the container to be restarted",
    )
    # SIGTERM, or SIGKILL after the probe's grace period where the process is PID 1 of its namespace (which
    # ignores a SIGTERM it does not handle)
    assert status["lastState"]["terminated"]["exitCode"] in (128 + 15, 128 + 9)
    killing = event_messages(cluster, namespace, "forgetful", "Killing")
    assert killing == ["Container main failed liveness probe, will be restarted"]
    assert "Liveness probe failed: command exited with 1" in event_messages(
        cluster, namespace, "forgetful", "Unhealthy"
    )
    wait_for(
        lambda: "running" in container_status(cluster, namespace, "forgetful").get("state", {}),
        90,
        "the container to run again after its back-off",
    )


def test_a_startup_probe_holds_back_the_other_probes_until_it_succeeds(cluster: Cluster, namespace: str) -> None:
    port = free_port()
    never_alive = {
        "exec": {"command": ["python", "-c", "raise SystemExit(1)"]},
        "periodSeconds": 1,
        "failureThreshold": 1000,
    }
    cluster.apply(
        flags_pod(
            cluster,
            "slow-start",
            namespace,
            port,
            startupProbe=http_probe("/started", failureThreshold=120),
            readinessProbe={"tcpSocket": {"port": port}, "periodSeconds": 1},
            livenessProbe=never_alive,
        )
    )

    def unhealthy() -> list[str]:
        return event_messages(cluster, namespace, "slow-start", "Unhealthy")

    wait_for(lambda: len([m for m in unhealthy() if m.startswith("Startup probe failed")]) >= 3, 60, "startup probes")
    status = container_status(cluster, namespace, "slow-start")
    assert "running" in status["state"]
    assert (status["started"], status["ready"], status["restartCount"]) == (False, False, 0)
    assert not pod_ready(cluster, namespace, "slow-start")
    assert not [m for m in unhealthy() if m.startswith("Liveness")]

    flag(port, "PUT", "started")
    cluster.kubectl("wait", "-n", namespace, "pod/slow-start", "--for=condition=Ready", "--timeout=30s")
    assert container_status(cluster, namespace, "slow-start")["started"]
    wait_for(lambda: [m for m in unhealthy() if m.startswith("Liveness probe failed")], 30, "the liveness probe to run")
