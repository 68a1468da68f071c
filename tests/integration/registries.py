"""Registries of their own for tests: the pinned `registry` binary serving a directory on a free loopback port,
optionally behind htpasswd Basic authentication, stopped and started again at will."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import bcrypt
import httpx
import yaml

from localcluster.cluster import free_port
from localcluster.registry import ENVIRONMENT, registry_config
from tests.integration.conftest import bin_path, wait_for

_BLOB_GET = re.compile(r'"GET /v2/\S+/blobs/(sha256:[0-9a-f]{64}) HTTP/[\d.]+" 200 ')


def registry_binary() -> Path:
    for directory in bin_path():
        if (directory / "registry").is_file():
            return directory / "registry"
    raise AssertionError("no registry binary on the binaries' path; run hack/build-binaries.sh")


class RegistryServer:
    def __init__(self, directory: Path, users: dict[str, str] | None = None) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.log = directory / "registry.log"
        self.storage = directory / "storage"
        htpasswd = None
        if users:
            htpasswd = directory / "htpasswd"
            htpasswd.write_text(
                "".join(
                    f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4)).decode()}\n" for user, pw in users.items()
                )
            )
        self.config = directory / "config.yaml"
        self.config.write_text(yaml.safe_dump(registry_config(self.storage, self.port, htpasswd)))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [registry_binary(), "serve", self.config], stdout=log, stderr=subprocess.STDOUT, env=ENVIRONMENT
            )
        wait_for(self._answers, 30, f"the registry on {self.address}", interval=0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log.read_text()
        try:
            return httpx.get(f"{self.url}/v2/", timeout=2).status_code in (200, 401)
        except httpx.TransportError:
            return False

    def blob_downloads(self) -> list[str]:
        """The digest of each blob served in full, from the registry's access log."""
        return _BLOB_GET.findall(self.log.read_text())

    def blob_file(self, digest: str) -> Path:
        """Where the registry's filesystem storage keeps a blob's bytes."""
        hex_digest = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"
