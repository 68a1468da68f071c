"""OCI images made in memory (layers as tarballs, configs, manifests, indexes) and pushed to a registry through
the distribution API, as `docker push` would."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from typing import Any

import httpx

Entry = tuple[tarfile.TarInfo, bytes]

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _info(name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, 1_700_000_000
    return info


def regular(name: str, content: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    info = _info(name, tarfile.REGTYPE, mode, uid, gid)
    info.size = len(content)
    return info, content


def directory(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return _info(name, tarfile.DIRTYPE, mode, uid, gid), b""


def symlink(name: str, target: str) -> Entry:
    info = _info(name, tarfile.SYMTYPE, 0o777)
    info.linkname = target
    return info, b""


def hardlink(name: str, target: str) -> Entry:
    info = _info(name, tarfile.LNKTYPE, 0o644)
    info.linkname = target
    return info, b""


def device(name: str) -> Entry:
    info = _info(name, tarfile.CHRTYPE, 0o666)
    info.devmajor, info.devminor = 1, 3
    return info, b""


def tarball(*entries: Entry, compressed: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, content in entries:
            archive.addfile(info, io.BytesIO(content) if info.isreg() else None)
    return gzip.compress(buffer.getvalue(), mtime=0) if compressed else buffer.getvalue()


def digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


class Pusher:
    """Pushes blobs and manifests to the registry at `url` (http://host:port), with Basic `auth` or `headers`
    (a Bearer token) if given."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None, headers: dict[str, str] | None = None) -> None:
        self.client = httpx.Client(base_url=url, auth=auth, headers=headers, timeout=30)

    def blob(self, repository: str, data: bytes) -> str:
        started = self.client.post(f"/v2/{repository}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = httpx.URL(started.headers["Location"])
        response = self.client.put(location.copy_merge_params({"digest": digest(data)}), content=data)
        assert response.status_code == 201, response.text
        return digest(data)

    def manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        response = self.client.put(
            f"/v2/{repository}/manifests/{reference}", content=body, headers={"Content-Type": media_type}
        )
        assert response.status_code == 201, response.text
        return digest(body)

    def image(
        self, repository: str, layers: list[bytes], config: dict[str, Any], tag: str | None = None
    ) -> tuple[str, bytes]:
        """Pushes the layers, an OCI config holding `config` and a manifest (by digest, and by `tag` if given);
        returns the manifest's digest and bytes."""
        diff_ids = [digest(gzip.decompress(layer)) for layer in layers]
        config_blob = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": config,
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
        ).encode()
        for blob in (config_blob, *layers):
            self.blob(repository, blob)
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": descriptor(CONFIG, config_blob),
                "layers": [descriptor(LAYER, layer) for layer in layers],
            }
        ).encode()
        manifest_digest = self.manifest(repository, tag or digest(body), body, MANIFEST)
        return manifest_digest, body

    def index(self, repository: str, tag: str, manifests: dict[str, bytes]) -> str:
        """Pushes an index of already pushed manifests, keyed by platform (`os/architecture`), under `tag`."""
        entries = []
        for platform, body in manifests.items():
            os_name, architecture = platform.split("/")
            entries.append(descriptor(MANIFEST, body, platform={"os": os_name, "architecture": architecture}))
        body = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}).encode()
        return self.manifest(repository, tag, body, INDEX)
