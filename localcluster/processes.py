"""Starting, finding and stopping the processes of the local cluster.

Every process the cluster starts, and every process those start, carries the cluster's marker in its
environment, so that stopping the cluster finds them all, even orphans of a killed parent."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

MARKER_VARIABLE = "KUBESCRIBE_LOCALCLUSTER_ID"


def spawn(argv: list[str], log_path: Path, env: Mapping[str, str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Starts `argv` in a session of its own, its output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )


def is_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def marked_processes(markers: Mapping[str, str]) -> list[int]:
    """The pids of processes whose environment has every `key=value` of `markers`."""
    wanted = {f"{key}={value}".encode() for key, value in markers.items()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if wanted <= environ and is_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def terminate(pids: Iterable[int], grace_seconds: float) -> None:
    """SIGTERM to each process (and its process group), SIGKILL to what is left after the grace period."""
    pids = [pid for pid in pids if is_alive(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            _signal(pid, sig)
        deadline = time.monotonic() + grace_seconds
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = [pid for pid in pids if is_alive(pid)]
        if not pids:
            return


def kill(pids: Iterable[int], timeout: float = 10) -> None:
    """SIGKILL to each process (and its process group) at once, as a crash would end them; waits until they are gone."""
    pids = [pid for pid in pids if is_alive(pid)]
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = [pid for pid in pids if is_alive(pid)]


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
