"""The cache's directory: one file per version of a store object, named by a key the caller computes, filled once
and atomically (written beside, then renamed), the least recently used evicted once the files pass a size cap.

One process owns a directory. A file being read stays readable when it is evicted: the reader holds it open."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


@dataclass(frozen=True)
class Filled:
    """An object the cache holds, open for reading; whether this call wrote it, and how many others it evicted."""

    file: BinaryIO
    wrote: bool
    evicted: int = 0


class Disk:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.objects = directory / "objects"
        self.filling = directory / "filling"
        self.max_bytes = max_bytes
        self.objects.mkdir(parents=True, exist_ok=True)
        self.filling.mkdir(parents=True, exist_ok=True)
        for leftover in self.filling.iterdir():  # of a fill that a stopped process left half written
            leftover.unlink(missing_ok=True)
        self._locks_lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def open(self, key: str) -> BinaryIO | None:
        """The cached object `key`, open for reading and marked as just used; None when it is not cached."""
        path = self.objects / key
        try:
            file = path.open("rb")
        except FileNotFoundError:
            return None
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)
        return file

    def fill(self, key: str, size: int, write: Callable[[BinaryIO], None]) -> Filled:
        """The object `key` of `size` bytes, which `write` fills unless it is cached, after the least recently used
        objects have made room for it. Callers of one key wait for one fill; a fill that raises leaves nothing
        behind."""
        with self._lock(key):
            file = self.open(key)
            if file is not None:
                return Filled(file, wrote=False)
            evicted = self.evict(room=size)
            descriptor, name = tempfile.mkstemp(dir=self.filling)
            os.close(descriptor)
            temp = Path(name)
            try:
                with temp.open("wb") as out:
                    write(out)
                    out.flush()
                    os.fsync(out.fileno())
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            temp.rename(self.objects / key)
            return Filled((self.objects / key).open("rb"), wrote=True, evicted=evicted)

    def evict(self, room: int) -> int:
        """Deletes the least recently used objects until `room` more bytes fit under the cap; how many it deleted.
        Fills of different objects at once may each pass the cap by what the others write."""
        entries = sorted(self._entries(), key=lambda entry: entry[0])
        total = sum(size for _, size, _ in entries)
        evicted = 0
        for _, size, path in entries:
            if total + room <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            evicted += 1
        return evicted

    def usage(self) -> int:
        """The bytes the cached objects take."""
        return sum(size for _, size, _ in self._entries())

    def _entries(self) -> Iterator[tuple[float, int, Path]]:
        for path in self.objects.iterdir():
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                yield stat.st_mtime, stat.st_size, path

    def _lock(self, key: str) -> threading.Lock:
        """The lock of one object's fill; kept for every object ever filled, a few hundred bytes each."""
        with self._locks_lock:
            return self._locks.setdefault(key, threading.Lock())
