"""How the local node runs a container from its image: which argv, user, variables and directory, as a kubelet and
its runtime decide them, and paths inside the image's root filesystem."""

from pathlib import Path

import pytest

from localcluster.nodeagent.sandbox import (
    DEFAULT_PATH,
    Identity,
    container_identity,
    container_variables,
    image_id,
    inside,
    process_argv,
    pull_policy,
    working_dir,
)
from localcluster.podspec import ConfigError

IMAGE = {"Entrypoint": ["/entry"], "Cmd": ["--serve"], "Env": ["PATH=/opt/bin:/bin", "LANG=C.UTF-8"], "User": "app"}
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:65532:65533::/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:65533:\nstaff:x:50:\n"


def pod(security: dict | None = None) -> dict:
    return {"metadata": {"name": "p"}, "spec": {"securityContext": security or {}}}


def test_command_replaces_the_entrypoint_and_args_replace_the_cmd() -> None:
    env = {"MODEL": "tiny.en"}
    assert process_argv({"name": "c"}, IMAGE, env) == ["/entry", "--serve"]
    assert process_argv({"name": "c", "args": ["--model", "$(MODEL)"]}, IMAGE, env) == ["/entry", "--model", "tiny.en"]
    assert process_argv({"name": "c", "command": ["python"]}, IMAGE, env) == ["python"]
    assert process_argv({"name": "c", "command": ["python"], "args": ["-V"]}, IMAGE, env) == ["python", "-V"]
    with pytest.raises(ConfigError, match="no command specified"):
        process_argv({"name": "c"}, {}, env)


def test_the_user_is_the_pods_or_the_containers_else_the_images_named_user() -> None:
    container: dict = {"name": "c"}
    assert container_identity(pod(), container, IMAGE, PASSWD, GROUP) == Identity(65532, 65533, (65533,))
    assert container_identity(pod({"runAsUser": 1000}), container, IMAGE, PASSWD, GROUP) == Identity(1000, 0, (0,))
    own = {"name": "c", "securityContext": {"runAsUser": 2000, "runAsGroup": 3000}}
    assert container_identity(pod({"runAsUser": 1000}), own, IMAGE, PASSWD, GROUP) == Identity(2000, 3000, (3000,))
    assert container_identity(pod(), container, {"User": "65532:staff"}, PASSWD, GROUP) == Identity(65532, 50, (50,))
    assert container_identity(pod(), container, {}, PASSWD, GROUP) == Identity(0, 0, (0,))
    grouped = pod({"runAsUser": 1000, "runAsGroup": 1000, "supplementalGroups": [4, 5], "fsGroup": 2000})
    assert container_identity(grouped, container, IMAGE, PASSWD, GROUP).groups == (1000, 4, 5, 2000)


def test_run_as_non_root_refuses_root_and_names_it_cannot_verify() -> None:
    container: dict = {"name": "c"}
    with pytest.raises(ConfigError, match="image will run as root"):
        container_identity(pod({"runAsNonRoot": True}), container, {}, PASSWD, GROUP)
    with pytest.raises(ConfigError, match=r"non-numeric user \(app\), cannot verify user is non-root"):
        container_identity(pod({"runAsNonRoot": True}), container, IMAGE, PASSWD, GROUP)
    assert container_identity(pod({"runAsNonRoot": True}), container, {"User": "65532"}, PASSWD, GROUP).uid == 65532
    with pytest.raises(ConfigError, match="unable to find user nobody"):
        container_identity(pod(), container, {"User": "nobody"}, PASSWD, GROUP)


def test_the_pods_variables_win_over_the_images() -> None:
    variables = container_variables(IMAGE, {"LANG": "de_DE.UTF-8", "MODEL": "base"})
    assert variables == {"PATH": "/opt/bin:/bin", "LANG": "de_DE.UTF-8", "MODEL": "base"}
    assert container_variables({}, {})["PATH"] == DEFAULT_PATH


def test_the_working_directory_is_the_containers_else_the_images() -> None:
    assert working_dir({"workingDir": "/work"}, {"WorkingDir": "/app"}) == "/work"
    assert working_dir({}, {"WorkingDir": "/app"}) == "/app"
    assert working_dir({}, {}) == "/"


def test_paths_inside_the_root_never_lead_out_of_it(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")
    (root / "escape").symlink_to("/etc")
    (root / "up").symlink_to("../../..")
    assert inside(root, "/lib/x") == root / "usr" / "lib" / "x"
    assert inside(root, "/escape/passwd") == root / "etc" / "passwd"
    assert inside(root, "/up/etc") == root / "etc"
    assert inside(root, "/../../etc/shadow") == root / "etc" / "shadow"
    (root / "loop").symlink_to("loop")
    with pytest.raises(ConfigError, match="too many symlinks"):
        inside(root, "/loop/x")


def test_image_ids_name_the_pulled_digest() -> None:
    assert image_id("127.0.0.1:5000/team/runner:0.1", "sha256:ab") == "127.0.0.1:5000/team/runner@sha256:ab"
    assert image_id("127.0.0.1:5000/runner@sha256:cd", "sha256:cd") == "127.0.0.1:5000/runner@sha256:cd"


def test_the_pull_policy_defaults_as_the_api_server_defaults_it() -> None:
    assert pull_policy({"image": "127.0.0.1:5000/runner:0.1"}) == "IfNotPresent"
    assert pull_policy({"image": "127.0.0.1:5000/runner:latest"}) == "Always"
    assert pull_policy({"image": "127.0.0.1:5000/runner"}) == "Always"
    assert pull_policy({"image": "127.0.0.1:5000/runner@sha256:ab"}) == "IfNotPresent"
    assert pull_policy({"image": "127.0.0.1:5000/runner:0.1", "imagePullPolicy": "Never"}) == "Never"
