"""`make up` / `make down` through the launcher's command line, on a cluster of this test's own."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from localcluster import processes
from localcluster.cluster import LocalCluster
from tests.integration.conftest import Cluster, bin_path, running_pid, wait_for


def launcher(root: Path, command: str) -> subprocess.CompletedProcess[str]:
    path = ":".join(map(str, bin_path()))
    return subprocess.run(
        [sys.executable, "-m", "localcluster", "--root", str(root), "--bin-path", path, command],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def parent(pid: int) -> int:
    # /proc/<pid>/stat: "pid (command) state ppid ...", where the command may hold spaces and parentheses.
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_up_is_idempotent_and_down_leaves_no_process(tmp_path: Path, cluster: Cluster, namespace: str) -> None:
    # A pod of the session's cluster, which must live through this second cluster's life on the same machine.
    cluster.apply(cluster.pod("neighbour", namespace, "import time; time.sleep(3600)"))
    neighbour = wait_for(
        lambda: running_pid(cluster.try_get("pod", "neighbour", "-n", namespace)), 60, "the neighbour pod to run"
    )

    root = tmp_path / "cluster"
    first = launcher(root, "up")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("started")
    local = LocalCluster(root, bin_path())
    state = local.load_state()
    assert state is not None
    env_file = (root / "env").read_text()
    for variable in ("KUBECONFIG", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PATH"):
        assert f"export {variable}=" in env_file

    again = launcher(root, "up")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already up")
    assert local.load_state() == state

    # A running pod: its process is the child of a shim the cluster's node agent started.
    own = Cluster(local)
    own.apply(own.pod("sleeper", "default", "import time; time.sleep(3600)"))

    pod_pid = wait_for(lambda: running_pid(own.try_get("pod", "sleeper")), 60, "the pod to run")
    marked = processes.marked_processes({processes.MARKER_VARIABLE: state.cluster_id})
    assert parent(pod_pid) in marked
    assert set(state.pids.values()) <= set(marked)

    down = launcher(root, "down")
    assert down.returncode == 0, down.stderr
    assert processes.marked_processes({processes.MARKER_VARIABLE: state.cluster_id}) == []
    assert not [pid for pid in [*state.pids.values(), pod_pid] if processes.is_alive(pid)]
    assert not [name for name, port in state.ports.items() if listening(port)]
    assert json.loads((root / "cluster.json").read_text())["pids"] == {}
    assert processes.is_alive(neighbour)
