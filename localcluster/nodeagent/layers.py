"""Image layers applied to a root filesystem, as a container runtime applies them: tar entries in order,
whiteouts deleting what lower layers wrote, ownership and modes kept, and nothing ever written outside the
root, whatever the archive holds."""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_SYMLINKS = 40
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class LayerError(ValueError):
    """A layer that cannot be applied safely or at all; the message names the entry."""


def entry_path(name: str) -> str:
    """The archive path of an entry, relative to the root, normalised; refuses absolute paths and `..`."""
    path = PurePosixPath(name)
    if path.is_absolute():
        raise LayerError(f"entry {name!r} has an absolute path")
    if ".." in path.parts:
        raise LayerError(f"entry {name!r} climbs out with '..'")
    return "/".join(part for part in path.parts if part != ".")


def whiteout(path: str) -> tuple[str, bool] | None:
    """For a whiteout entry, (the path it deletes, whether it is opaque: deletes the directory's contents
    only); None for an ordinary entry."""
    parent, _, base = path.rpartition("/")
    if base == OPAQUE:
        return parent, True
    if not base.startswith(WHITEOUT):
        return None
    name = base.removeprefix(WHITEOUT)
    if name in ("", ".", ".."):
        raise LayerError(f"whiteout {path!r} names no entry")
    return f"{parent}/{name}".lstrip("/"), False


def resolve(root: Path, path: str, *, follow_last: bool = False) -> Path:
    """Where `path` lands in `root` when every symlink on the way to its last component is followed as if
    `root` were `/`: absolute targets start again at `root`, `..` stops at it. The last component is followed only
    with `follow_last` (an entry replaces a symlink, it does not write through it; a mount point is reached
    through one)."""
    pending = [part for part in reversed(path.split("/")) if part not in ("", ".")]
    resolved: list[str] = []
    followed = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if (pending or follow_last) and candidate.is_symlink():
            followed += 1
            if followed > MAX_SYMLINKS:
                raise LayerError(f"too many symlinks on the way to {path!r}")
            target = str(candidate.readlink())
            if target.startswith("/"):
                resolved = []
            pending.extend(part for part in reversed(target.split("/")) if part not in ("", "."))
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def apply_layer(layer: IO[bytes], root: Path) -> None:
    """Applies one layer (a seekable tar stream, gzip-compressed or not) to `root`."""
    if layer.read(len(ZSTD_MAGIC)) == ZSTD_MAGIC:
        raise LayerError("zstd-compressed layers are not supported (gzip or uncompressed tar)")
    layer.seek(0)
    written: set[str] = set()
    try:
        with tarfile.open(fileobj=layer, mode="r|*") as archive:
            for member in archive:
                path = entry_path(member.name)
                deleted = whiteout(path)
                if deleted is not None:
                    _delete(root, *deleted, keep=written)
                elif path:
                    _extract(archive, member, root, path)
                    written.update(_with_ancestors(path))
                else:
                    _set_attributes(root, member)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise LayerError(f"cannot apply the layer: {error}") from error


def _with_ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]


def _delete(root: Path, path: str, opaque: bool, keep: set[str]) -> None:
    """Deletes what lower layers put at `path` (its contents only when `opaque`); what this layer wrote stays."""
    target = resolve(root, path)
    if not opaque:
        _remove(target)
    elif target.is_dir() and not target.is_symlink():
        for child in target.iterdir():
            if f"{path}/{child.name}".lstrip("/") not in keep:
                _remove(child)


def _remove(target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.is_symlink() or target.exists():
        target.unlink()


def _extract(archive: tarfile.TarFile, member: tarfile.TarInfo, root: Path, path: str) -> None:
    target = resolve(root, path)
    if member.ischr() or member.isblk():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if member.isdir():
        if not (target.is_dir() and not target.is_symlink()):
            _remove(target)
            target.mkdir()
    else:
        _remove(target)
        if member.isreg():
            source = archive.extractfile(member)
            assert source is not None
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(descriptor, "wb") as destination:
                shutil.copyfileobj(source, destination)
        elif member.issym():
            target.symlink_to(member.linkname)
        elif member.islnk():
            source_path = resolve(root, entry_path(member.linkname))
            if not (source_path.is_file() or source_path.is_symlink()):
                raise LayerError(f"entry {member.name!r} links to {member.linkname!r}, which is not a file here")
            os.link(source_path, target, follow_symlinks=False)
            return
        elif member.isfifo():
            os.mkfifo(target)
        else:
            raise LayerError(f"entry {member.name!r} is of an unknown type {member.type!r}")
    _set_attributes(target, member)


def _set_attributes(target: Path, member: tarfile.TarInfo) -> None:
    """Owner, mode and modification time; the mode last, since a change of owner clears setuid bits."""
    if os.geteuid() == 0:
        os.lchown(target, member.uid, member.gid)
    if not member.issym():
        target.chmod(stat.S_IMODE(member.mode))
    os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
