"""A container's startup, liveness and readiness probes, run as a kubelet runs them.

Each probe of a container's run has a thread of its own, from the run's start (after `initialDelaySeconds`) every
`periodSeconds`; its result changes once `successThreshold` attempts in a row succeed or `failureThreshold` fail.
The startup probe holds the others back until it succeeds; a failed startup or liveness probe kills the container
(which its pod then restarts under its restartPolicy); the readiness probe decides whether the container is ready.
Each failed attempt is an `Unhealthy` event. Handlers: `exec` (the command inside the container), `httpGet`,
`tcpSocket`; `grpc` is not supported by the local node and fails."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster.nodeagent.container import Container
from localcluster.nodeagent.environment import HOST_IP, command_argv

KINDS = {"startupProbe": "Startup", "livenessProbe": "Liveness", "readinessProbe": "Readiness"}
DEFAULT_GRACE_SECONDS = 30
MAX_OUTPUT_BYTES = 10 * 1024
USER_AGENT = "kube-probe/local"
Event = Callable[[str, str, str], None]
"""Records an event of the pod: its type, reason and message."""


@dataclass(frozen=True)
class Timing:
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int


def timing(probe: dict[str, Any]) -> Timing:
    """A probe's timing, with the API server's defaults for the fields it leaves out."""
    return Timing(
        initial_delay=probe.get("initialDelaySeconds", 0),
        period=probe.get("periodSeconds", 10),
        timeout=probe.get("timeoutSeconds", 1),
        success_threshold=probe.get("successThreshold", 1),
        failure_threshold=probe.get("failureThreshold", 3),
    )


class Threshold:
    """A probe's result as a kubelet keeps it: set once enough attempts in a row agree, unchanged in between."""

    def __init__(self, success_threshold: int, failure_threshold: int) -> None:
        self.needed = {True: success_threshold, False: failure_threshold}
        self.last: bool | None = None
        self.run = 0

    def record(self, success: bool) -> bool | None:
        """The result this attempt sets, or None while too few attempts in a row agree."""
        self.run = self.run + 1 if success == self.last else 1
        self.last = success
        return success if self.run >= self.needed[success] else None


class ProbeError(Exception):
    """A probe that cannot be attempted as it is written."""


def port_number(port: int | str, spec: dict[str, Any]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        number = port
    else:
        named = [p["containerPort"] for p in spec.get("ports", []) if p.get("name") == port]
        if not named and not port.isdigit():
            raise ProbeError(f"couldn't find port: {port} in container {spec['name']}")
        number = int(named[0] if named else port)
    if not 0 < number < 65536:
        raise ProbeError(f"invalid port number: {number}")
    return number


def http_get(action: dict[str, Any], spec: dict[str, Any], timeout: float) -> tuple[bool, str]:
    """GETs the probe's URL: a status from 200 to 399 succeeds. Redirects are followed on the same host only."""
    host = action.get("host") or HOST_IP
    host = f"[{host}]" if ":" in host else host
    path = action.get("path", "/")
    scheme = action.get("scheme", "HTTP")
    if scheme not in ("HTTP", "HTTPS"):
        raise ProbeError(f"unsupported scheme: {scheme}")
    url = f"{scheme.lower()}://{host}:{port_number(action['port'], spec)}"
    url += path if path.startswith("/") else f"/{path}"
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
    headers.update({header["name"]: header["value"] for header in action.get("httpHeaders", [])})
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=unverified), _SameHostRedirects()
    )
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=timeout) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
        error.close()
    except (OSError, ValueError, http.client.HTTPException) as error:
        return False, f'Get "{url}": {getattr(error, "reason", error)}'
    if 200 <= status < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {status}"


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect to another host ends the probe on the redirect's own status, as a kubelet's does."""

    def redirect_request(  # noqa: PLR0917 - the signature of the method it overrides
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        if urllib.parse.urlsplit(newurl).hostname != urllib.parse.urlsplit(req.full_url).hostname:
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def tcp_socket(action: dict[str, Any], spec: dict[str, Any], timeout: float) -> tuple[bool, str]:
    """Connects to the probe's port: a connection succeeds."""
    host = action.get("host") or HOST_IP
    port = port_number(action["port"], spec)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return False, f"dial tcp {host}:{port}: {error}"
    return True, ""


def run_command(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[bool, str]:
    """Runs an exec probe's command: exit code 0 succeeds; its output is the message."""
    try:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as error:
        return False, str(error)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return False, f"command timed out after {timeout:g}s"
    message = output[-MAX_OUTPUT_BYTES:].decode(errors="replace").strip()
    if process.returncode != 0:
        return False, message or f"command exited with {process.returncode}"
    return True, message


def attempt(probe: dict[str, Any], container: Container, timeout: float) -> tuple[bool, str]:
    """One attempt of the probe on the running container: whether it succeeded, and why not."""
    try:
        if "exec" in probe:
            command = command_argv(container, probe["exec"].get("command", []))
            return run_command(command, container.env, container.cwd, timeout)
        if "httpGet" in probe:
            return http_get(probe["httpGet"], container.spec, timeout)
        if "tcpSocket" in probe:
            return tcp_socket(probe["tcpSocket"], container.spec, timeout)
    except ProbeError as error:
        return False, str(error)
    if "grpc" in probe:
        return False, "grpc probes are not supported by the local node"
    return False, "the probe has no handler"


class Prober:
    """The probes of one run of a container: they set its `started` and `ready`, and kill it when it fails its
    startup or liveness probe."""

    def __init__(self, container: Container, pod: dict[str, Any], event: Event) -> None:
        self.container = container
        self.event = event
        self.pod_grace: float = pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
        self.restarts = pod["spec"].get("restartPolicy", "Always") != "Never"
        self.stopped = threading.Event()
        container.started = "startupProbe" not in container.spec
        container.ready = container.started and "readinessProbe" not in container.spec

    def start(self) -> None:
        for field, kind in KINDS.items():
            if field in self.container.spec:
                name = f"probe-{self.container.name}-{kind.lower()}"
                threading.Thread(
                    target=self._probe, args=(kind, self.container.spec[field]), name=name, daemon=True
                ).start()

    def stop(self) -> None:
        self.stopped.set()

    def _probe(self, kind: str, probe: dict[str, Any]) -> None:
        settings = timing(probe)
        threshold = Threshold(settings.success_threshold, settings.failure_threshold)
        due = time.monotonic() + settings.initial_delay
        while not self.stopped.wait(max(0.0, due - time.monotonic())):
            if kind == "Startup" or self.container.started:
                success, message = attempt(probe, self.container, settings.timeout)
                if self.stopped.is_set():
                    return
                if not success:
                    self.event("Warning", "Unhealthy", f"{kind} probe failed: {message}")
                result = threshold.record(success)
                if result is not None and self._apply(kind, probe, result):
                    return
            while due <= time.monotonic():
                due += settings.period

    def _apply(self, kind: str, probe: dict[str, Any], result: bool) -> bool:
        """Acts on a probe's result; True once the probe is done for this run."""
        if kind == "Readiness":
            self.container.ready = result
            return False
        if kind == "Startup" and result:
            self.container.started = True
            self.container.ready = "readinessProbe" not in self.container.spec
            return True
        if result:
            return False
        message = f"Container {self.container.name} failed {kind.lower()} probe"
        self.event("Normal", "Killing", f"{message}, will be restarted" if self.restarts else message)
        self._kill(probe.get("terminationGracePeriodSeconds", self.pod_grace))
        return True

    def _kill(self, grace: float) -> None:
        process = self.container.process
        if process is None:
            return
        self.container.signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            self.container.signal(signal.SIGKILL)
