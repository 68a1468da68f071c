"""The suite's secrets, and where they must never show: the components' logs, Events, TranscriptionJob statuses
and pods' termination messages. Secrets are remembered as the suite makes them; what goes during the suite (a
test's namespace, with its Events, jobs and pods) is recorded before it is deleted."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from kubescribe.operator import webhook

SIGNED_URL_PARTS = re.compile(r"(X-Amz-(?:Signature|Credential)=)[^&\s\"'\\]*", re.IGNORECASE)
"""A presigned URL's credentials: wherever they show, the URL can be used."""
MIN_SECRET_LENGTH = 8
"""Shorter values would be found by chance."""
EXCERPT_CHARS = 100


class Kubectl(Protocol):
    def get(self, *args: str) -> Any: ...


class LeakWatch:
    """The secrets the suite used, by value, and the texts recorded before they were deleted."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        """What each secret is, by its value."""
        self.records: list[tuple[str, str]] = []
        """(where, text) of everything recorded so far."""

    def secret(self, value: str, what: str) -> None:
        if len(value) >= MIN_SECRET_LENGTH:
            self.secrets.setdefault(value, what)

    def record_namespace(self, kubectl: Kubectl, namespace: str) -> None:
        """The namespace's Events, jobs' statuses and termination messages, and its webhook secret."""
        self.records.extend(api_texts(kubectl, "-n", namespace))
        self.remember_webhook_secrets(kubectl, "-n", namespace)

    def remember_webhook_secrets(self, kubectl: Kubectl, *scope: str) -> None:
        listed = kubectl.get("secrets", *scope, "--field-selector", f"metadata.name={webhook.SECRET_NAME}")
        for secret in listed["items"]:
            encoded = (secret.get("data") or {}).get("secret")
            if encoded:
                namespace = secret["metadata"]["namespace"]
                self.secret(base64.b64decode(encoded).decode(), f"webhook secret of {namespace}")


def api_texts(kubectl: Kubectl, *scope: str) -> Iterator[tuple[str, str]]:
    """Events, TranscriptionJob statuses and termination messages in `scope` (-n NAMESPACE or -A)."""
    for event in kubectl.get("events", *scope)["items"]:
        involved = event.get("involvedObject") or {}
        where = f"Event {involved.get('namespace')}/{involved.get('kind')}/{involved.get('name')} {event.get('reason')}"
        yield where, f"{event.get('reason')}: {event.get('message', '')}"
    served = kubectl.get("crd", "--field-selector", "metadata.name=transcriptionjobs.kubescribe.io")["items"]
    for job in kubectl.get("transcriptionjobs", *scope)["items"] if served else []:
        metadata = job["metadata"]
        yield (
            f"TranscriptionJob {metadata['namespace']}/{metadata['name']} status",
            json.dumps(job.get("status"), indent=1),
        )
    for pod in kubectl.get("pods", *scope)["items"]:
        metadata, status = pod["metadata"], pod.get("status") or {}
        for container in status.get("containerStatuses") or []:
            for state in (container.get("state") or {}, container.get("lastState") or {}):
                message = (state.get("terminated") or {}).get("message")
                if message:
                    where = f"Pod {metadata['namespace']}/{metadata['name']} {container['name']} termination message"
                    yield where, message


def log_texts(root: Path) -> Iterator[tuple[str, str]]:
    """Every container's log the local nodes kept (the operator's, the gateway's, the runners'...) and the logs of
    the control plane, the store and the node agents."""
    for path in sorted([*root.glob("nodes/*/pods/*/logs/*/*.log"), *root.glob("logs/*.log")]):
        yield str(path.relative_to(root)), path.read_text(errors="replace")


def masked(line: str, secrets: Mapping[str, str]) -> tuple[str, int | None]:
    """The line with presigned URLs' credentials and each secret replaced, and where the first one is; None when
    it holds none."""
    markers = []
    if SIGNED_URL_PARTS.search(line):
        markers.append("=<masked>")
        line = SIGNED_URL_PARTS.sub(r"\1<masked>", line)
    for value, what in secrets.items():
        if value in line:
            markers.append(f"<{what}>")
            line = line.replace(value, markers[-1])
    return line, min((line.find(marker) for marker in markers), default=None)


def find_leaks(secrets: Mapping[str, str], texts: Iterable[tuple[str, str]]) -> list[str]:
    """`where:line: excerpt` of every line that holds a secret or a presigned URL's credentials, masked."""
    leaks = []
    for where, text in texts:
        for number, line in enumerate(text.splitlines(), 1):
            shown, first = masked(line, secrets)
            if first is not None:
                start = max(first - EXCERPT_CHARS, 0)
                leaks.append(f"{where}:{number}: ...{shown[start : start + 3 * EXCERPT_CHARS]}...")
    return leaks
