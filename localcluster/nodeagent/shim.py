"""The local node's container runtime: `python -m localcluster.nodeagent.shim PLAN` runs one container as its plan
(JSON, written by the node agent) describes it.

It enters new mount, UTS and PID namespaces, mounts an overlay of the image's root filesystem (a fresh upper
directory per run) with /dev, /sys, the volumes and the per-pod files on it, then forks the container's first
process, which mounts /proc, chroots into the overlay, takes the container's user and runs the command as PID 1 of
its namespace. The shim stays as that process's parent: it forwards signals to it and exits with its status
(128 + signal number when it was killed). The network is the host's, as for every pod of the local node.

When the container cannot be started, the reason goes to the plan's error file and the shim exits with
START_ERROR_CODE: the node agent reports StartError.

`python -m localcluster.nodeagent.shim enter PLAN PID COMMAND...` runs a command in the running container whose
first process is PID (an exec probe's), as that process runs: in its namespaces and root, in its working directory,
as its user with `no_new_privs`, with its variables; it exits with the command's status."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

from localcluster.nodeagent.sandbox import inside
from localcluster.podspec import ConfigError

START_ERROR_CODE = 128
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWPID = 0x00020000, 0x04000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def mount(source: str, target: str | Path, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode(),
            str(target).encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def _bind(source: str | Path, target: Path, *, read_only: bool) -> None:
    if Path(source).is_dir():
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(exist_ok=True)
    mount(str(source), target, None, MS_BIND | MS_REC)
    if read_only:
        mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_REC)


def _make_dev(root: Path) -> None:
    dev = root / "dev"
    dev.mkdir(exist_ok=True)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k")
    for name in DEVICES:
        _bind(f"/dev/{name}", dev / name, read_only=False)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ):
        (dev / name).symlink_to(target)
    (dev / "shm").mkdir()
    mount("shm", dev / "shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k")


def prepare_root(plan: dict[str, Any]) -> Path:
    """In the new mount namespace: the container's root filesystem with everything mounted on it."""
    root = Path(plan["root"])
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    options = f"lowerdir={plan['lower']},upperdir={plan['upper']},workdir={plan['work']}"
    mount("overlay", root, "overlay", 0, options)
    _make_dev(root)
    for name in ("proc", "sys"):
        inside(root, name).mkdir(exist_ok=True)
    mount("/sys", root / "sys", None, MS_BIND | MS_REC)
    mount("none", root / "sys", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_REC)
    for volume in plan["mounts"]:
        _bind(volume["source"], inside(root, volume["target"]), read_only=volume.get("readOnly", False))
    if plan.get("readOnlyRoot"):
        mount("none", root, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    return root


def run_process(plan: dict[str, Any], root: Path) -> NoReturn:
    """The container's first process (PID 1 of its namespace): /proc, chroot, user, exec."""
    mount("proc", root / "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chroot(root)
    cwd = plan["cwd"]
    Path(cwd).mkdir(parents=True, exist_ok=True)
    os.chdir(cwd)
    _become_user(plan)
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_DFL)
    argv = plan["argv"]
    try:
        os.execvpe(argv[0], argv, plan["env"])  # noqa: S606 - the container's own command
    except FileNotFoundError:
        raise OSError(f'exec: "{argv[0]}": executable file not found in $PATH') from None
    except PermissionError:
        raise OSError(f'exec: "{argv[0]}": permission denied') from None


def _become_user(plan: dict[str, Any]) -> None:
    os.setgroups(plan["groups"])
    os.setgid(plan["gid"])
    os.setuid(plan["uid"])
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")  # setuid cleared it
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl")


def _fail(error_fd: int, message: str) -> NoReturn:
    os.write(error_fd, message.encode())
    os._exit(START_ERROR_CODE)


def main(plan_path: str) -> NoReturn:
    plan = json.loads(Path(plan_path).read_text())
    error_fd = os.open(plan["errorFile"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWPID), "unshare")
        _check(_libc.sethostname(plan["hostname"].encode(), len(plan["hostname"].encode())), "sethostname")
        root = prepare_root(plan)
    except (OSError, ConfigError) as error:
        _fail(error_fd, f"failed to create the container's root filesystem: {error}")
    pid = os.fork()
    if pid == 0:
        try:
            run_process(plan, root)
        except OSError as error:
            _fail(error_fd, str(error))
    for sig in FORWARDED:
        signal.signal(sig, lambda number, _frame: os.kill(pid, number))
    _exit_as(pid)


def _exit_as(pid: int) -> NoReturn:
    """Waits for child `pid` and exits with its status (128 + signal number when it was killed)."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    os._exit(128 - code if code < 0 else code)


def enter(plan_path: str, pid: int, argv: list[str]) -> NoReturn:
    plan = json.loads(Path(plan_path).read_text())
    root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
    if os.path.samestat(os.fstat(root), Path("/").stat()):
        sys.exit("the container's process has not started yet")  # the shim has not yet chrooted it
    namespaces = [os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY) for name in ("uts", "pid", "mnt")]
    for namespace in namespaces:
        _check(_libc.setns(namespace, 0), "setns")
    os.fchdir(root)
    os.chroot(".")
    os.chdir(plan["cwd"])
    _become_user(plan)
    child = os.fork()  # only a child of this process is in the container's PID namespace
    if child == 0:
        try:
            os.execvpe(argv[0], argv, plan["env"])  # noqa: S606 - the probe's own command
        except OSError as error:
            print(f'exec: "{argv[0]}": {error.strerror}', file=sys.stderr)
            os._exit(127)
    _exit_as(child)


if __name__ == "__main__":
    if sys.argv[1] == "enter":
        enter(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
    main(sys.argv[1])
