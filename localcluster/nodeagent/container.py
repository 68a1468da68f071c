"""One container of a pod as a local process: its start, its exit and termination message, its restart back-off,
and its state as a containerStatus reports it."""

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
from localcluster.podspec import expand

MAX_MESSAGE_BYTES = 4096
FALLBACK_LOG_LINES = 80
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0


class Container:
    """One container of a pod and its current process, if any."""

    def __init__(self, spec: dict[str, Any], root: Path, log_path: Path) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.root = root
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.restart_count = 0
        self.state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict[str, Any] = {}
        self.next_start = 0.0
        self.backoff = BACKOFF_START

    @property
    def termination_message_path(self) -> Path:
        path: str = self.spec.get("terminationMessagePath", "/dev/termination-log")
        return self.root / path.lstrip("/")

    @property
    def exit_code(self) -> int | None:
        return self.state["terminated"]["exitCode"] if "terminated" in self.state else None

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "containerID": f"kubescribe://{self.process.pid}" if self.process else "",
            "ready": "running" in self.state,
            "started": "running" in self.state,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }

    def start(self, env: dict[str, str]) -> None:
        command = [expand(part, env) for part in self.spec.get("command", []) + self.spec.get("args", [])]
        workdir = self.root / self.spec.get("workingDir", "/").lstrip("/")
        workdir.mkdir(parents=True, exist_ok=True)
        self.termination_message_path.parent.mkdir(parents=True, exist_ok=True)
        self.termination_message_path.unlink(missing_ok=True)
        with self.log_path.open("ab") as out:
            out.write(f"--- {now_timestamp()} start {self.name} (restart {self.restart_count})\n".encode())
        try:
            self.process = processes.spawn(command, self.log_path, env, cwd=workdir)
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
        message = self._termination_message(code)
        terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": self.state["running"]["startedAt"],
            "finishedAt": now_timestamp(),
            "containerID": f"kubescribe://{self.process.pid}",
        }
        if message:
            terminated["message"] = message
        self.state = {"terminated": terminated}
        return True

    def _termination_message(self, code: int) -> str:
        path = self.termination_message_path
        message = path.read_bytes()[-MAX_MESSAGE_BYTES:].decode(errors="replace") if path.exists() else ""
        if not message and code != 0 and self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = self.log_path.read_bytes().decode(errors="replace").splitlines()[-FALLBACK_LOG_LINES:]
            message = "\n".join(lines)[-2048:]
        return message

    def signal(self, sig: signal.Signals) -> None:
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def schedule_restart(self) -> None:
        self.last_state = self.state
        self.restart_count += 1
        self.next_start = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        self.state = {
            "waiting": {"reason": "CrashLoopBackOff", "message": f"back-off restarting failed container {self.name}"}
        }
