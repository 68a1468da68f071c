"""The configuration of CNCF distribution's registry, from which the node agents pull images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ENVIRONMENT = {"OTEL_TRACES_EXPORTER": "none"}
"""The registry's variables: without this its tracing sends spans to an OTLP collector on localhost."""


def registry_config(root: Path, port: int) -> dict[str, Any]:
    """A registry storing its blobs and manifests under `root`, serving plain HTTP on 127.0.0.1:`port`, with no
    authentication."""
    return {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
