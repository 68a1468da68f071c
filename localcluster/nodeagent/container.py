"""One container of a pod, run from its image by the shim: its start, its exit and termination message, its restart
back-off, and its state as a containerStatus reports it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from kubescribe.api.timestamps import now_timestamp
from localcluster import processes
from localcluster.nodeagent.shim import START_ERROR_CODE

MAX_MESSAGE_BYTES = 4096
FALLBACK_LOG_LINES = 80
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0


class Container:
    """One container of a pod and its current process, if any."""

    def __init__(self, spec: dict[str, Any], root: Path, log_dir: Path) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.root = root
        self.log_dir = log_dir
        """One log file per run of the container: `<restart count>.log`."""
        self.termination_message_path = root / "termination-log"
        """The file the container sees at its terminationMessagePath."""
        self.error_path: Path | None = None
        """Where the shim of the current run writes why the container could not start."""
        self.plan: Path | None = None
        """The shim's plan of the current run."""
        self.env: dict[str, str] = {}
        self.cwd = root
        """The variables and working directory the current run was started with (its shim's)."""
        self.started = False
        self.ready = False
        """Whether the current run has passed its startup probe, and its readiness probe: set by its Prober."""
        self.image_id = ""
        self._main_pid: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.restart_count = 0
        self.state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict[str, Any] = {}
        self.next_start = 0.0
        self.backoff = BACKOFF_START
        self.pull_backoff = BACKOFF_START

    @property
    def exit_code(self) -> int | None:
        return self.state["terminated"]["exitCode"] if "terminated" in self.state else None

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": self.image_id,
            "containerID": f"kubescribe://{self.main_pid()}" if self.process else "",
            "ready": "running" in self.state and self.ready,
            "started": "running" in self.state and self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }

    def start(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        """Starts `argv` (the shim with its plan) with its output to the log."""
        cwd.mkdir(parents=True, exist_ok=True)
        self.termination_message_path.parent.mkdir(parents=True, exist_ok=True)
        self.termination_message_path.write_bytes(b"")
        self.termination_message_path.chmod(0o666)  # whichever user the container runs as writes it
        self._main_pid = None
        self.env, self.cwd = env, cwd
        try:
            self.process = processes.spawn(argv, self.log_path, env, cwd=cwd)
        except OSError as error:
            self.process = None
            self.state = {
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": str(error),
                    "startedAt": now_timestamp(),
                    "finishedAt": now_timestamp(),
                }
            }
            return
        self.state = {"running": {"startedAt": now_timestamp()}}

    def reap(self) -> bool:
        """Records the exit of a finished process; True if it just ended."""
        if self.process is None or "running" not in self.state:
            return False
        code = self.process.poll()
        if code is None:
            return False
        code = 128 - code if code < 0 else code  # killed by a signal: 128 + signal number
        start_error = self._start_error(code)
        message = start_error or self._termination_message(code)
        terminated = {
            "exitCode": code,
            "reason": "StartError" if start_error else "Completed" if code == 0 else "Error",
            "startedAt": self.state["running"]["startedAt"],
            "finishedAt": now_timestamp(),
            "containerID": f"kubescribe://{self.main_pid()}",
        }
        if message:
            terminated["message"] = message
        self.state = {"terminated": terminated}
        return True

    def main_pid(self) -> int | None:
        """The container's first process: the shim's child (PID 1 of its namespace) once forked, until then the
        shim."""
        if self.process is None:
            return None
        if self._main_pid is None:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            with contextlib.suppress(OSError, IndexError):
                self._main_pid = int(children.read_text().split()[0])
        return self._main_pid or self.process.pid

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def log_path(self) -> Path:
        """The log of the container's current (or last) run."""
        return self.log_dir / f"{self.restart_count}.log"

    def logs(self) -> list[Path]:
        """The logs of the container's runs, the latest last."""
        return sorted(self.log_dir.glob("*.log"), key=lambda path: int(path.stem))

    def _start_error(self, code: int) -> str:
        """Why the shim could not start the container, when that is why it exited."""
        if code != START_ERROR_CODE or self.error_path is None or not self.error_path.exists():
            return ""
        return self.error_path.read_text(errors="replace")[-MAX_MESSAGE_BYTES:]

    def _termination_message(self, code: int) -> str:
        path = self.termination_message_path
        message = path.read_bytes()[-MAX_MESSAGE_BYTES:].decode(errors="replace") if path.exists() else ""
        if not message and code != 0 and self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = self.log_path.read_bytes().decode(errors="replace").splitlines()[-FALLBACK_LOG_LINES:]
            message = "\n".join(lines)[-2048:]
        return message

    def signal(self, sig: signal.Signals) -> None:
        """`sig` to the container: SIGKILL to its whole process group, any other signal to the shim, which passes
        it on to its process (the process, in the same group, would otherwise get it twice)."""
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if sig != signal.SIGKILL:
                    os.kill(self.process.pid, sig)
                else:
                    os.killpg(self.process.pid, sig)

    def schedule_restart(self) -> None:
        self.last_state = self.state
        self.restart_count += 1
        self.next_start = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        self.state = {
            "waiting": {"reason": "CrashLoopBackOff", "message": f"back-off restarting failed container {self.name}"}
        }
