"""The node's images: references parsed as Kubernetes parses them, pulled from their registry with a pod's
pull secrets, each blob checked against its digest and kept by it, and each image's layers unpacked into one
root filesystem per manifest, which the container runtime mounts read-only.

The store's directory holds `blobs/sha256/<hex>` (verified blobs: configs and layers),
`images/<hex>/{rootfs,config.json}` (one per platform manifest digest, renamed into place whole) and
`references.json` (each reference pulled, normalised, to its manifest digest, so that `IfNotPresent` needs
no registry). Node agents may share a store: unpacking and the index are changed under a file lock."""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from localcluster.nodeagent.distribution import DOCKER_HUB, TIMEOUT, RegistryError, Repository
from localcluster.nodeagent.layers import LayerError, apply_layer

Credentials = dict[str, tuple[str, str]]
"""Registry host[:port] to (username, password)."""

POLICIES = ("Always", "IfNotPresent", "Never")
PLATFORM = {"os": "linux", "architecture": "amd64"}
DEFAULT_TAG = "latest"
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
DOCKER_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")

_HOST = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::\d+)?")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"\w[\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")


@dataclass(frozen=True)
class Image:
    reference: str
    """As the pod named it."""
    digest: str
    """The digest of the platform (linux/amd64) manifest pulled."""
    rootfs: Path
    """The unpacked root filesystem, to be used read-only (an overlay's lower directory)."""
    config: dict[str, Any]
    """The `config` object of the image's OCI config (Entrypoint, Cmd, Env, User, WorkingDir, ...); {} if absent."""


class PullError(Exception):
    """An image that could not be had; the message is what a kubelet puts in an ErrImagePull event."""


@dataclass(frozen=True)
class Reference:
    """A reference, normalised: docker.io for no registry, library/ for Docker Hub's official images, `latest`
    for no tag; a digest, if any, is what is pulled."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        name = f"{self.registry}/{self.repository}"
        return f"{name}@{self.digest}" if self.digest else f"{name}:{self.tag}"

    @property
    def version(self) -> str:
        """What the registry is asked for: the digest, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG


def parse_reference(text: str) -> Reference:
    """Parses `[host[:port]/]path[:tag][@sha256:hex]` as Docker and Kubernetes do; ValueError if invalid."""
    name, at, digest = text.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        raise ValueError(f"invalid digest {digest!r} (sha256:<64 hex digits> expected)")
    tag = None
    if name.rfind(":") > name.rfind("/"):
        name, _, tag = name.rpartition(":")
        if not _TAG.fullmatch(tag):
            raise ValueError(f"invalid tag {tag!r}")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        if not _HOST.fullmatch(first):
            raise ValueError(f"invalid registry host {first!r}")
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry in DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    if not all(_COMPONENT.fullmatch(component) for component in repository.split("/")):
        raise ValueError(f"invalid repository name {repository!r} (lower-case letters, digits and separators)")
    return Reference(registry, repository, tag if tag or digest else DEFAULT_TAG, digest or None)


def registry_credentials(secrets: list[dict[str, Any]]) -> Credentials:
    """The credentials of pull secrets (Secret objects as the API gives them, `data` base64-encoded), of type
    kubernetes.io/dockerconfigjson or the legacy kubernetes.io/dockercfg; for a registry named twice, the first
    secret's. Malformed secrets and entries are passed over."""
    found: Credentials = {}
    for secret in secrets:
        for key, entry in _docker_config_entries(secret):
            pair = _username_password(entry)
            host = credential_host(key)
            if pair and host:
                found.setdefault(host, pair)
    return found


def credential_host(key: str) -> str:
    """The host[:port] a docker config's key names: `https://index.docker.io/v1/` is docker.io."""
    host = key.strip().split("://", 1)[-1].split("/", 1)[0].lower()
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


def _docker_config_entries(secret: Any) -> Iterable[tuple[str, Any]]:
    data = secret.get("data") if isinstance(secret, dict) else None
    if not isinstance(data, dict):
        return []
    kind = secret.get("type")
    if kind == "kubernetes.io/dockerconfigjson":
        document = _decode_json(data.get(".dockerconfigjson"))
        document = document.get("auths") if isinstance(document, dict) else None
    elif kind == "kubernetes.io/dockercfg":
        document = _decode_json(data.get(".dockercfg"))
    else:
        return []
    return document.items() if isinstance(document, dict) else []


def _decode_json(encoded: Any) -> Any:
    try:
        return json.loads(base64.b64decode(str(encoded), validate=True))
    except (binascii.Error, ValueError):
        return None


def _username_password(entry: Any) -> tuple[str, str] | None:
    """(username, password) of an entry, from its `auth` (base64 of `username:password`) or its fields."""
    if not isinstance(entry, dict):
        return None
    if entry.get("auth"):
        try:
            username, colon, password = base64.b64decode(str(entry["auth"]), validate=True).decode().partition(":")
        except (binascii.Error, ValueError):
            return None
        return (username, password) if colon and username else None
    fields = entry.get("username"), entry.get("password")
    if isinstance(fields[0], str) and isinstance(fields[1], str) and fields[0]:
        return fields[0], fields[1]
    return None


def platform_manifest(index: dict[str, Any]) -> str:
    """The digest of the linux/amd64 manifest of an index (or manifest list); ValueError if it has none."""
    offered = []
    for descriptor in index.get("manifests") or []:
        platform = (descriptor.get("platform") if isinstance(descriptor, dict) else None) or {}
        if all(platform.get(key) == value for key, value in PLATFORM.items()):
            return str(descriptor["digest"])
        offered.append(f"{platform.get('os')}/{platform.get('architecture')}")
    raise ValueError(f"the index has no linux/amd64 image (it has {', '.join(offered) or 'none'})")


def image_config(blob: bytes) -> dict[str, Any]:
    """The `config` object of an OCI image config blob; {} if it has none."""
    document = json.loads(blob)
    config = document.get("config") if isinstance(document, dict) else None
    return config if isinstance(config, dict) else {}


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class ImageStore:
    """The images of a node, under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._blobs = directory / "blobs" / "sha256"
        self._images = directory / "images"
        self._scratch = directory / "tmp"
        self._index = directory / "references.json"
        self._lock = directory / "lock"
        for folder in (self._blobs, self._images, self._scratch):
            folder.mkdir(parents=True, exist_ok=True)

    def present(self, reference: str) -> Image | None:
        """The image `reference` names if it was pulled here, without asking any registry."""
        try:
            parsed = parse_reference(reference)
        except ValueError:
            return None
        digest = self._read_index().get(str(parsed)) or parsed.digest
        return self._image(reference, digest) if digest else None

    def pull(self, reference: str, policy: str, credentials: Credentials | None = None) -> Image:
        """The image `reference` names, pulled as a kubelet would with `policy` (Always, IfNotPresent, Never)."""
        if policy not in POLICIES:
            raise ValueError(f"pull policy {policy!r} is none of {', '.join(POLICIES)}")
        try:
            parsed = parse_reference(reference)
        except ValueError as error:
            raise PullError(f'invalid image reference "{reference}": {error}') from None
        if policy != "Always" and (image := self.present(reference)):
            return image
        if policy == "Never":
            raise PullError(f'Container image "{reference}" is not present with pull policy of Never')
        try:
            with httpx.Client(timeout=TIMEOUT) as client:
                pair = (credentials or {}).get(parsed.registry)
                repository = Repository(client, parsed.registry, parsed.repository, pair)
                image = self._fetch(reference, parsed, repository)
        except (RegistryError, LayerError, ValueError) as error:
            raise PullError(f'failed to pull image "{reference}": {error}') from None
        self._remember(str(parsed), image.digest)
        return image

    # -- pulling -----------------------------------------------------------------------------------

    def _fetch(self, reference: str, parsed: Reference, repository: Repository) -> Image:
        digest, manifest = self._manifest(repository, parsed.version)
        if _is_index(manifest):
            digest, manifest = self._manifest(repository, platform_manifest(manifest))
            if _is_index(manifest):
                raise ValueError(f"the linux/amd64 entry {digest} is an index, not an image manifest")
        if image := self._image(reference, digest):
            return image
        if manifest.get("schemaVersion") != 2 or not isinstance(manifest.get("config"), dict):
            raise ValueError(f"the manifest {digest} is of a kind not supported (OCI or Docker v2 expected)")
        config = image_config(self._blob(repository, manifest["config"]).read_bytes())
        layers = [self._blob(repository, layer) for layer in manifest.get("layers") or []]
        return self._unpack(reference, digest, config, layers)

    def _manifest(self, repository: Repository, version: str) -> tuple[str, dict[str, Any]]:
        """(digest, document) of a manifest or index; checked against `version` when it is a digest."""
        body, media_type = repository.manifest(version)
        digest = sha256_digest(body)
        if _DIGEST.fullmatch(version) and digest != version:
            raise ValueError(f"digest mismatch: the manifest {version} has the digest {digest}")
        try:
            document = json.loads(body)
        except ValueError:
            raise ValueError(f"the manifest {version} is not JSON") from None
        if not isinstance(document, dict):
            raise ValueError(f"the manifest {version} is not a JSON object")
        document.setdefault("mediaType", media_type)
        return digest, document

    def _blob(self, repository: Repository, descriptor: Any) -> Path:
        """The verified blob a descriptor names, downloaded unless already here."""
        if not isinstance(descriptor, dict):
            raise ValueError(f"a descriptor of the manifest is not a JSON object: {descriptor!r}")
        digest, size = str(descriptor.get("digest")), descriptor.get("size")
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"unsupported digest {digest!r} (sha256 only)")
        path = self._blobs / digest.removeprefix("sha256:")
        if path.is_file():
            return path
        hasher, received = hashlib.sha256(), 0
        with tempfile.NamedTemporaryFile(dir=self._scratch, prefix="blob-", delete=False) as download:
            try:
                for chunk in repository.blob(digest):
                    received += len(chunk)
                    if isinstance(size, int) and received > size:
                        raise ValueError(f"the blob {digest} is larger than its {size} bytes")
                    hasher.update(chunk)
                    download.write(chunk)
                actual = f"sha256:{hasher.hexdigest()}"
                if actual != digest:
                    raise ValueError(f"digest mismatch: the blob {digest} has the digest {actual}")
            except BaseException:
                Path(download.name).unlink()
                raise
        Path(download.name).replace(path)
        return path

    def _unpack(self, reference: str, digest: str, config: dict[str, Any], layers: list[Path]) -> Image:
        """Applies the layers in order to a new root filesystem, renamed into place whole with its config."""
        with self._locked():
            if image := self._image(reference, digest):
                return image
            for stale in self._images.glob(".unpacking-*"):
                shutil.rmtree(stale)
            staging = Path(tempfile.mkdtemp(dir=self._images, prefix=".unpacking-"))
            try:
                (staging / "rootfs").mkdir(mode=0o755)
                for layer in layers:
                    with layer.open("rb") as stream:
                        apply_layer(stream, staging / "rootfs")
                (staging / "config.json").write_text(json.dumps(config))
                staging.chmod(0o755)
                staging.rename(self._images / digest.removeprefix("sha256:"))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        image = self._image(reference, digest)
        assert image is not None
        return image

    # -- the store ---------------------------------------------------------------------------------

    def _image(self, reference: str, digest: str) -> Image | None:
        folder = self._images / digest.removeprefix("sha256:")
        if not (folder / "config.json").is_file():
            return None
        return Image(reference, digest, folder / "rootfs", json.loads((folder / "config.json").read_text()))

    def _read_index(self) -> dict[str, str]:
        try:
            index: dict[str, str] = json.loads(self._index.read_text())
        except FileNotFoundError:
            return {}
        return index

    def _remember(self, reference: str, digest: str) -> None:
        with self._locked():
            index = self._read_index()
            if index.get(reference) == digest:
                return
            index[reference] = digest
            with tempfile.NamedTemporaryFile("w", dir=self._scratch, prefix="index-", delete=False) as update:
                json.dump(index, update, indent=1, sort_keys=True)
            Path(update.name).replace(self._index)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def _is_index(document: dict[str, Any]) -> bool:
    return document.get("mediaType") in INDEX_TYPES or "manifests" in document
