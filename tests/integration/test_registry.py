"""The node agent's image store against the real registry: images pushed through the distribution API, pulled
by tag and by digest, with pull policies, pull secrets, shared layers and corrupted blobs."""

import base64
import json
import stat
import threading
from collections import Counter

import httpx
import pytest

from localcluster.nodeagent.images import ImageStore, PullError, registry_credentials
from tests.integration.registries import RegistryServer, TokenService, htpasswd_auth
from tests.oci import Pusher, digest, directory, regular, tarball

BASE = tarball(
    directory("usr/bin"),
    regular("usr/bin/hello", b"#!/bin/sh\necho hello\n", mode=0o4755, uid=0, gid=0),
    regular("etc/motd", b"base\n"),
    regular("etc/old.conf", b"old\n"),
    regular("var/cache/app/stale", b"stale\n"),
    regular("home/user/notes", b"notes\n", mode=0o600, uid=1000, gid=1000),
)
UPDATE = tarball(
    regular("etc/.wh.old.conf"),
    regular("var/cache/app/.wh..wh..opq"),
    regular("var/cache/app/fresh", b"fresh\n"),
    regular("etc/motd", b"updated\n"),
)
ARM = tarball(regular("etc/motd", b"arm64\n"), regular("arm-only", b"arm\n"))
CONFIG = {"Entrypoint": ["/usr/bin/hello"], "Env": ["PATH=/usr/bin:/bin", "GREETING=hi"], "WorkingDir": "/home/user"}


@pytest.fixture
def registry(tmp_path):
    server = RegistryServer(tmp_path / "registry")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def store(tmp_path):
    return ImageStore(tmp_path / "images")


def push_two_platforms(registry, repository="team/app", tag="v1"):
    """An index under `tag` of a linux/amd64 image (BASE then UPDATE) and a linux/arm64 one; returns the amd64
    manifest's digest and the index's."""
    pusher = Pusher(registry.url)
    amd64, amd64_body = pusher.image(repository, [BASE, UPDATE], CONFIG)
    _, arm64_body = pusher.image(repository, [ARM], {"Entrypoint": ["/arm-only"]})
    index = pusher.index(repository, tag, {"linux/arm64": arm64_body, "linux/amd64": amd64_body})
    return amd64, index


def test_an_image_pulled_by_tag_is_the_amd64_manifest_with_its_layers_applied(registry, store):
    amd64, _ = push_two_platforms(registry)

    image = store.pull(f"{registry.address}/team/app:v1", "IfNotPresent")

    assert image.reference == f"{registry.address}/team/app:v1"
    assert image.digest == amd64
    assert image.config == CONFIG
    files = sorted(p.relative_to(image.rootfs).as_posix() for p in image.rootfs.rglob("*") if not p.is_dir())
    assert files == ["etc/motd", "home/user/notes", "usr/bin/hello", "var/cache/app/fresh"]
    assert (image.rootfs / "etc/motd").read_text() == "updated\n"
    hello, notes = (image.rootfs / "usr/bin/hello").stat(), (image.rootfs / "home/user/notes").stat()
    assert stat.S_IMODE(hello.st_mode) == 0o4755
    assert (notes.st_uid, notes.st_gid, stat.S_IMODE(notes.st_mode)) == (1000, 1000, 0o600)


def test_pulls_by_the_index_digest_and_the_manifest_digest_give_the_same_image(registry, store):
    amd64, index = push_two_platforms(registry)

    by_index = store.pull(f"{registry.address}/team/app@{index}", "Always")
    by_manifest = store.pull(f"{registry.address}/team/app@{amd64}", "Always")

    assert by_index.digest == by_manifest.digest == amd64
    assert by_index.rootfs == by_manifest.rootfs
    assert (by_manifest.rootfs / "etc/motd").read_text() == "updated\n"


def test_if_not_present_needs_no_registry_once_pulled_and_always_does(registry, store):
    amd64, index = push_two_platforms(registry)
    reference = f"{registry.address}/team/app:v1"
    pulled = store.pull(reference, "Always")
    store.pull(f"{registry.address}/team/app@{index}", "IfNotPresent")
    registry.stop()

    assert store.pull(reference, "IfNotPresent") == pulled
    assert store.present(reference) == pulled
    assert store.pull(f"{registry.address}/team/app@{index}", "IfNotPresent").digest == amd64
    assert store.pull(reference, "Never") == pulled
    with pytest.raises(
        PullError, match=rf'failed to pull image "{reference}": registry {registry.address} unreachable'
    ):
        store.pull(reference, "Always")
    with pytest.raises(PullError, match="unreachable"):
        store.pull(f"{registry.address}/team/app:v2", "IfNotPresent")


def test_never_refuses_an_image_not_pulled_before(registry, store):
    push_two_platforms(registry)
    reference = f"{registry.address}/team/app:v1"
    with pytest.raises(PullError, match=f'Container image "{reference}" is not present with pull policy of Never'):
        store.pull(reference, "Never")
    assert store.present(reference) is None


def test_a_missing_image_fails_naming_it(registry, store):
    push_two_platforms(registry)
    for reference in (f"{registry.address}/team/app:v9", f"{registry.address}/team/other:v1"):
        with pytest.raises(PullError, match=rf'failed to pull image "{reference}": not found'):
            store.pull(reference, "IfNotPresent")


def test_an_image_without_a_registry_host_is_looked_for_on_docker_hub(store):
    with pytest.raises(PullError, match=r'failed to pull image "busybox": registry docker.io unreachable'):
        store.pull("busybox", "IfNotPresent")


def pull_secret(address, username, password):
    config = {"auths": {address: {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "registry-pull", "namespace": "team"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }


def test_a_registry_behind_authentication_needs_the_pull_secret(tmp_path, store):
    password = "s3cret-pull-password"
    server = RegistryServer(tmp_path / "auth-registry", auth=htpasswd_auth(tmp_path, {"puller": password}))
    server.start()
    try:
        pusher = Pusher(server.url, auth=("puller", password))
        pushed, _ = pusher.image("private/app", [BASE], CONFIG, tag="v1")
        reference = f"{server.address}/private/app:v1"

        with pytest.raises(PullError, match="unauthorized") as anonymous:
            store.pull(reference, "IfNotPresent")
        wrong = registry_credentials([pull_secret(server.address, "puller", "not-the-password")])
        with pytest.raises(PullError, match="unauthorized") as rejected:
            store.pull(reference, "IfNotPresent", wrong)
        assert "not-the-password" not in str(rejected.value)
        assert store.present(reference) is None

        image = store.pull(
            reference, "IfNotPresent", registry_credentials([pull_secret(server.address, "puller", password)])
        )
        assert image.digest == pushed
        assert (image.rootfs / "etc/motd").read_text() == "base\n"
        assert password not in str(anonymous.value)
    finally:
        server.stop()


def test_a_registry_behind_a_token_service_is_pulled_from_with_a_token_for_the_pull_secret(tmp_path, store):
    password = "token-service-password"
    tokens = TokenService(tmp_path / "tokens", {"puller": password})
    server = RegistryServer(tmp_path / "token-registry", auth=tokens.auth)
    server.start()
    try:
        push_token = tokens.token("pusher", ["repository:private/app:pull,push"])
        pusher = Pusher(server.url, headers={"Authorization": f"Bearer {push_token}"})
        pushed, _ = pusher.image("private/app", [BASE], CONFIG, tag="v1")
        reference = f"{server.address}/private/app:v1"

        with pytest.raises(PullError, match="unauthorized"):
            store.pull(reference, "IfNotPresent")
        assert httpx.get(f"{server.url}/v2/private/app/manifests/v1").status_code == 401

        image = store.pull(
            reference, "IfNotPresent", registry_credentials([pull_secret(server.address, "puller", password)])
        )
        assert image.digest == pushed
        assert (image.rootfs / "etc/motd").read_text() == "base\n"
        assert tokens.requests[-1]["query"] == {
            "scope": ["repository:private/app:pull"],
            "service": [TokenService.SERVICE],
        }
    finally:
        server.stop()
        tokens.stop()


def test_a_corrupted_blob_fails_the_pull_and_nothing_is_unpacked(registry, store):
    pusher = Pusher(registry.url)
    pusher.image("team/app", [BASE, UPDATE], CONFIG, tag="v1")
    registry.blob_file(digest(UPDATE)).write_bytes(b"tampered")

    with pytest.raises(PullError, match="digest mismatch"):
        store.pull(f"{registry.address}/team/app:v1", "IfNotPresent")

    assert store.present(f"{registry.address}/team/app:v1") is None
    assert list((store.directory / "images").iterdir()) == []
    assert list((store.directory / "tmp").iterdir()) == []


def test_layers_shared_by_two_images_are_downloaded_once(registry, store):
    pusher = Pusher(registry.url)
    first_only, second_only = tarball(regular("first", b"1\n")), tarball(regular("second", b"2\n"))
    pusher.image("team/first", [BASE, UPDATE, first_only], CONFIG, tag="v1")
    pusher.image("team/second", [BASE, UPDATE, second_only], {"Cmd": ["sh"]}, tag="v1")

    first = store.pull(f"{registry.address}/team/first:v1", "IfNotPresent")
    second = store.pull(f"{registry.address}/team/second:v1", "IfNotPresent")

    downloads = Counter(registry.blob_downloads())
    assert [downloads[digest(BASE)], downloads[digest(UPDATE)]] == [1, 1]
    assert sum(downloads.values()) == 6  # two configs, the two shared layers, one layer of each image's own
    assert (first.rootfs / "first").exists() and not (first.rootfs / "second").exists()
    assert (second.rootfs / "second").read_text() == "2\n"
    assert (second.rootfs / "etc/motd").read_text() == "updated\n"
    assert second.config == {"Cmd": ["sh"]}


def test_node_agents_sharing_a_store_see_only_whole_images(registry, tmp_path):
    push_two_platforms(registry)
    reference = f"{registry.address}/team/app:v1"
    images, errors = [], []

    def pull():
        try:
            images.append(ImageStore(tmp_path / "shared").pull(reference, "Always"))
        except PullError as error:
            errors.append(error)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len({image.rootfs for image in images}) == 1
    assert sorted(p.name for p in (tmp_path / "shared/images").iterdir()) == [images[0].digest.removeprefix("sha256:")]
    assert (images[0].rootfs / "var/cache/app/fresh").read_text() == "fresh\n"


def test_the_local_cluster_serves_a_registry_the_store_pulls_from(cluster, store):
    address = cluster.env["KUBESCRIBE_REGISTRY"]
    assert httpx.get(f"http://{address}/v2/").status_code == 200
    pushed, _ = Pusher(f"http://{address}").image("kubescribe/smoke", [BASE], CONFIG, tag="v1")

    image = store.pull(f"{address}/kubescribe/smoke:v1", "IfNotPresent")

    assert image.digest == pushed
    assert (image.rootfs / "usr/bin/hello").read_text() == "#!/bin/sh\necho hello\n"
