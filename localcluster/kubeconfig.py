"""Kubeconfig documents, built as plain data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def kubeconfig(
    server: str,
    ca_file: Path,
    *,
    user: str,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    token_file: Path | None = None,
) -> dict[str, Any]:
    """A kubeconfig with one cluster, one user and one context, selected. A user's `token_file` is read again by
    clients while they run, so whoever writes it may replace the token."""
    credentials: dict[str, str] = {}
    if client_cert and client_key:
        credentials = {"client-certificate": str(client_cert), "client-key": str(client_key)}
    if token_file:
        credentials["tokenFile"] = str(token_file)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "kubescribe-local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "kubescribe-local", "context": {"cluster": "kubescribe-local", "user": user}}],
        "current-context": "kubescribe-local",
    }


def write_kubeconfig(path: Path, config: dict[str, Any]) -> Path:
    return write_private(path, yaml.safe_dump(config, sort_keys=False))


def write_private(path: Path, text: str) -> Path:
    """Writes `text` readable by its owner only, replacing the file at once: a reader sees the old text or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.new")
    staged.unlink(missing_ok=True)
    staged.touch(mode=0o600)
    staged.write_text(text)
    staged.replace(path)
    return path
