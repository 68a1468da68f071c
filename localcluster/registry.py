"""The configuration of CNCF distribution's registry, from which the node agents pull images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ENVIRONMENT = {"OTEL_TRACES_EXPORTER": "none"}
"""The registry's variables: without this its tracing sends spans to an OTLP collector on localhost."""


def registry_config(root: Path, port: int, htpasswd: Path | None = None) -> dict[str, Any]:
    """A registry storing its blobs and manifests under `root`, serving plain HTTP on 127.0.0.1:`port`; with
    `htpasswd` (bcrypt lines), every request needs Basic credentials of that file."""
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "kubescribe", "path": str(htpasswd)}}
    return config
