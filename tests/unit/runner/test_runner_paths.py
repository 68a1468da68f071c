"""Strings the user controls (object keys from their own store, model prefixes, URLs) never become paths outside
the runner's own directories: the runner names local files itself, or fails the job as bad input."""

import io
from pathlib import Path

import pytest

from kubescribe.api.v1alpha1 import Source, model_location
from kubescribe.contract import EXIT_BAD_INPUT, EgressRules, Grant, StoreGrants
from kubescribe.runner import models, source
from kubescribe.runner.config import S3Settings
from kubescribe.runner.errors import RunnerFailure
from kubescribe.runner.models import resolve_model
from kubescribe.runner.transfer import Cap

CAP = Cap(max_bytes=1 << 20, seconds=60)


class Store:
    """A user's own store: it lists whatever keys it likes."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.fetched: list[str] = []

    def list_objects(self, bucket: str, prefix: str, recursive: bool) -> list[object]:
        return [type("Item", (), {"is_dir": False, "object_name": key})() for key in self.keys]

    def fget_object(self, bucket: str, key: str, path: str) -> None:
        self.fetched.append(path)
        Path(path).write_bytes(b"x")

    def stat_object(self, bucket: str, key: str) -> object:
        return type("Stat", (), {"size": 1})()

    def get_object(self, bucket: str, key: str) -> io.BytesIO:
        self.fetched.append(key)
        response = Response(b"x")
        response.headers = {"Content-Length": "1"}
        return response


class Response(io.BytesIO):
    headers: dict[str, str]

    def release_conn(self) -> None:
        pass


def written_outside(root: Path, inside: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and not path.resolve().is_relative_to(inside)]


@pytest.mark.parametrize("model", ["s3://bucket/../../../../outside/", "s3://bucket/..", "s3://bucket//absolute/"])
def test_a_model_prefix_never_becomes_a_path(tmp_path: Path, model: str) -> None:
    cache = tmp_path / "cache"
    location = model_location(model)
    assert location is not None
    store = Store([f"{location[1]}model.bin"])
    found = Path(resolve_model(model, cache, lambda: store))  # type: ignore[arg-type, return-value]
    assert found.resolve().is_relative_to(cache.resolve())
    assert (found / "model.bin").is_file()
    assert written_outside(tmp_path, cache.resolve()) == []
    assert resolve_model(model, cache, lambda: Store([])) == str(found)  # type: ignore[arg-type, return-value]


@pytest.mark.parametrize("key", ["m/../../../escaped", "m//tmp/escaped", "m/sub/../../escaped", "m/", "m/a\0b"])
def test_a_listed_model_key_that_leaves_its_directory_fails_as_bad_input(tmp_path: Path, key: str) -> None:
    cache = tmp_path / "cache"
    store = Store(["m/model.bin", key])
    with pytest.raises(RunnerFailure) as failure:
        resolve_model("s3://bucket/m/", cache, lambda: store)  # type: ignore[arg-type, return-value]
    assert (failure.value.exit_code, failure.value.reason) == (EXIT_BAD_INPUT, "ModelNotFound")
    assert "leaves its directory" in failure.value.message
    assert written_outside(tmp_path, cache.resolve()) == []


@pytest.mark.parametrize("path", ["../escaped", "/tmp/escaped", "sub/../../escaped", ".", ""])
def test_a_granted_model_path_that_leaves_its_directory_fails_as_bad_input(
    tmp_path: Path, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[Path] = []
    monkeypatch.setattr(models, "download", lambda url, destination, what: fetched.append(destination))
    grant = Grant(url="https://store.example/m/x?X-Amz-Signature=abc", uri="s3://bucket/m/x")
    grants = StoreGrants(expires="2030-01-01T00:00:00Z", model={"model.bin": grant, path: grant})
    with pytest.raises(RunnerFailure) as failure:
        resolve_model("s3://bucket/m/", tmp_path / "cache", lambda: Store([]), grants)  # type: ignore[arg-type, return-value]
    assert failure.value.exit_code == EXIT_BAD_INPUT
    assert all(path.resolve().is_relative_to((tmp_path / "cache").resolve()) for path in fetched)


def test_a_source_key_is_never_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store([])
    monkeypatch.setattr(source, "s3_client", lambda settings, rules: store)
    destination = tmp_path / "work" / "source"
    destination.parent.mkdir()
    own_store = {"endpoint": "http://store.example", "secretName": "mine"}
    hostile = Source.model_validate({"s3": {"bucket": "audio", "key": "../../../etc/passwd", **own_store}})
    settings = S3Settings("http://store.example", "id", "secret")
    source.fetch(hostile, settings, None, EgressRules(), destination, cap=CAP)
    assert store.fetched == ["../../../etc/passwd"]
    assert destination.read_bytes() == b"x"
    assert written_outside(tmp_path, destination.parent.resolve()) == []


def test_a_source_url_is_never_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[Path] = []
    monkeypatch.setattr(source, "download_source", lambda url, destination, egress, cap: fetched.append(destination))
    destination = tmp_path / "source"
    hostile = Source.model_validate({"url": "https://example.org/../../etc/passwd"})
    source.fetch(hostile, S3Settings(None, None, None), None, EgressRules(), destination, cap=CAP)
    assert fetched == [destination]
