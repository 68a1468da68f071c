import base64
import io
import json
import stat

import pytest

from localcluster.nodeagent.distribution import endpoint, parse_challenge
from localcluster.nodeagent.images import Reference, parse_reference, platform_manifest, registry_credentials
from localcluster.nodeagent.layers import LayerError, apply_layer
from tests.oci import device, directory, hardlink, regular, symlink, tarball

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox", Reference("docker.io", "library/busybox", "latest", None)),
        ("team/app:v1", Reference("docker.io", "team/app", "v1", None)),
        ("index.docker.io/library/debian:12", Reference("docker.io", "library/debian", "12", None)),
        ("127.0.0.1:5000/team/app:v1.2", Reference("127.0.0.1:5000", "team/app", "v1.2", None)),
        ("localhost/app", Reference("localhost", "app", "latest", None)),
        ("registry.example.com/a/b/c", Reference("registry.example.com", "a/b/c", "latest", None)),
        (f"localhost:5000/app@{DIGEST}", Reference("localhost:5000", "app", None, DIGEST)),
        (f"host.example:443/app:v1@{DIGEST}", Reference("host.example:443", "app", "v1", DIGEST)),
        ("my-registry:5000/app", Reference("my-registry:5000", "app", "latest", None)),
    ],
)
def test_references_are_normalised_as_docker_does(text, expected):
    assert parse_reference(text) == expected


def test_a_reference_reads_back_with_its_digest_or_tag():
    assert str(parse_reference("busybox")) == "docker.io/library/busybox:latest"
    assert str(parse_reference(f"localhost:5000/app:v1@{DIGEST}")) == f"localhost:5000/app@{DIGEST}"
    assert parse_reference(f"localhost:5000/app:v1@{DIGEST}").version == DIGEST


@pytest.mark.parametrize(
    "text", ["", "Team/app", "app:", "app:bad tag", "app@sha256:abc", f"app@md5:{'ab' * 16}", "a//b", "/app", "app/"]
)
def test_invalid_references_are_refused(text):
    with pytest.raises(ValueError):
        parse_reference(text)


def test_loopback_registries_are_spoken_to_in_plain_http_and_others_in_https():
    assert endpoint("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert endpoint("localhost:5000") == "http://localhost:5000"
    assert endpoint("[::1]:5000") == "http://[::1]:5000"
    assert endpoint("registry.example.com") == "https://registry.example.com"
    assert endpoint("docker.io") == "https://registry-1.docker.io"


def test_challenges_give_their_scheme_and_parameters():
    header = 'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"'
    assert parse_challenge(header) == (
        "bearer",
        {"realm": "https://auth.example/token", "service": "registry.example", "scope": "repository:a/b:pull,push"},
    )
    assert parse_challenge('Basic realm="kubescribe"') == ("basic", {"realm": "kubescribe"})


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def docker_config_secret(auths: dict, name: str = "pull") -> dict:
    return {
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(json.dumps({"auths": auths}))},
    }


def test_credentials_from_dockerconfigjson_and_legacy_dockercfg_secrets():
    secrets = [
        docker_config_secret(
            {
                "127.0.0.1:5000": {"auth": b64("alice:pa:ss")},
                "https://index.docker.io/v1/": {"username": "bob", "password": "hub-secret"},
                "http://registry.example.com:8443/v2/": {"auth": b64("carol:c")},
            }
        ),
        {
            "type": "kubernetes.io/dockercfg",
            "data": {".dockercfg": b64(json.dumps({"legacy.example": {"auth": b64("dave:d")}}))},
        },
    ]
    assert registry_credentials(secrets) == {
        "127.0.0.1:5000": ("alice", "pa:ss"),
        "docker.io": ("bob", "hub-secret"),
        "registry.example.com:8443": ("carol", "c"),
        "legacy.example": ("dave", "d"),
    }


def test_the_first_secret_naming_a_registry_wins():
    first = docker_config_secret({"127.0.0.1:5000": {"auth": b64("first:1")}})
    second = docker_config_secret({"127.0.0.1:5000": {"auth": b64("second:2")}})
    assert registry_credentials([first, second]) == {"127.0.0.1:5000": ("first", "1")}


def test_malformed_secrets_and_entries_are_passed_over():
    good = docker_config_secret({"good.example": {"auth": b64("u:p")}})
    malformed = [
        {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "%%% not base64"}},
        {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64("not json")}},
        {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64('{"auths": []}')}},
        {"type": "kubernetes.io/dockerconfigjson"},
        {"type": "Opaque", "data": {".dockerconfigjson": good["data"][".dockerconfigjson"]}},
        docker_config_secret(
            {
                "no-colon.example": {"auth": b64("justauser")},
                "bad-auth.example": {"auth": "***"},
                "no-password.example": {"username": "u"},
                "not-a-dict.example": "u:p",
            }
        ),
        "not a secret",
    ]
    assert registry_credentials([*malformed, good]) == {"good.example": ("u", "p")}


def test_the_linux_amd64_manifest_is_chosen_from_an_index():
    index = {
        "manifests": [
            {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "sha256:attestation", "platform": {"os": "unknown", "architecture": "unknown"}},
            {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
        ]
    }
    assert platform_manifest(index) == "sha256:amd"
    with pytest.raises(ValueError, match="linux/arm64"):
        platform_manifest({"manifests": index["manifests"][:1]})


def apply(root, *entries, compressed=True):
    apply_layer(io.BytesIO(tarball(*entries, compressed=compressed)), root)


def test_layers_apply_in_order_keeping_owners_modes_and_links(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    apply(
        root,
        directory("usr/bin"),
        regular("usr/bin/tool", b"v1", mode=0o4755, uid=1000, gid=2000),
        regular("etc/config", b"old"),
        symlink("bin", "usr/bin"),
        hardlink("usr/bin/tool-alias", "usr/bin/tool"),
    )
    apply(root, regular("etc/config", b"new", mode=0o600), compressed=False)

    tool = (root / "usr/bin/tool").stat()
    assert (root / "usr/bin/tool").read_bytes() == b"v1"
    assert stat.S_IMODE(tool.st_mode) == 0o4755
    assert (tool.st_uid, tool.st_gid) == (1000, 2000)
    assert (root / "usr/bin/tool-alias").stat().st_ino == tool.st_ino
    assert (root / "bin").readlink().as_posix() == "usr/bin"
    assert (root / "etc/config").read_bytes() == b"new"
    assert stat.S_IMODE((root / "etc/config").stat().st_mode) == 0o600


def test_whiteouts_delete_what_lower_layers_wrote(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    apply(
        root,
        regular("app/keep.txt", b"keep"),
        regular("app/drop.txt", b"drop"),
        regular("app/cache/old-1", b"1"),
        regular("app/cache/old-2", b"2"),
        regular("app/gone/inside", b"x"),
    )
    apply(
        root,
        regular("app/.wh.drop.txt"),
        regular("app/.wh.gone"),
        regular("app/cache/fresh", b"fresh"),
        regular("app/cache/new/inside", b"new"),
        regular("app/cache/.wh..wh..opq"),
    )

    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "app",
        "app/cache",
        "app/cache/fresh",
        "app/cache/new",
        "app/cache/new/inside",
        "app/keep.txt",
    ]


@pytest.mark.parametrize("name", [".wh..", "app/.wh..", "app/.wh."])
def test_a_whiteout_naming_no_entry_is_refused(tmp_path, name):
    root = tmp_path / "rootfs"
    root.mkdir()
    apply(root, regular("app/kept", b"kept"))
    with pytest.raises(LayerError, match="names no entry"):
        apply(root, regular(name))
    assert (root / "app/kept").read_bytes() == b"kept"


def test_zstd_layers_are_refused_by_name(tmp_path):
    with pytest.raises(LayerError, match="zstd"):
        apply_layer(io.BytesIO(b"\x28\xb5\x2f\xfd" + b"\0" * 64), tmp_path)


def test_devices_are_skipped(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    apply(root, device("dev/null"), regular("dev/ok", b"ok"))
    assert sorted(p.name for p in (root / "dev").iterdir()) == ["ok"]


@pytest.mark.parametrize(
    "entries",
    [
        [regular("/outside/owned", b"x")],
        [regular("../outside/owned", b"x")],
        [regular("a/../../outside/owned", b"x")],
        [hardlink("stolen", "../outside/secret")],
    ],
    ids=["absolute", "dot-dot", "dot-dot-inside", "hardlink-dot-dot"],
)
def test_entries_naming_paths_outside_the_root_are_refused(tmp_path, entries):
    root, outside = tmp_path / "rootfs", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("secret")
    with pytest.raises(LayerError, match=r"absolute|'\.\.'"):
        apply(root, *entries)
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").stat().st_nlink == 1


def test_symlinks_never_lead_a_write_outside_the_root(tmp_path):
    root, outside = tmp_path / "rootfs", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("secret")
    apply(root, symlink("absolute", str(outside)), symlink("relative", "../../../../outside"))
    apply(
        root,
        regular("absolute/owned", b"x"),
        regular("relative/owned", b"y"),
        directory("relative/dir"),
    )
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (root / str(outside).lstrip("/") / "owned").read_bytes() == b"x"
    assert (root / "outside/owned").read_bytes() == b"y"
    assert (root / "outside/dir").is_dir()


def test_a_hardlink_through_a_symlink_cannot_reach_outside_the_root(tmp_path):
    root, outside = tmp_path / "rootfs", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("secret")
    with pytest.raises(LayerError, match="not a file here"):
        apply(root, symlink("up", str(outside)), hardlink("stolen", "up/secret"))
    assert (outside / "secret").stat().st_nlink == 1
    assert not (root / "stolen").exists()


def test_an_entry_replaces_a_symlink_rather_than_writing_through_it(tmp_path):
    root, outside = tmp_path / "rootfs", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("secret")
    apply(root, symlink("passwd", str(outside / "secret")))
    apply(root, regular("passwd", b"mine"))
    assert (outside / "secret").read_text() == "secret"
    assert not (root / "passwd").is_symlink()
    assert (root / "passwd").read_bytes() == b"mine"
