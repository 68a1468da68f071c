"""The model cache's directory: atomic fills, one fill per object at a time, and eviction of the least recently used."""

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest
from fastapi import HTTPException

from kubescribe.modelcache.app import store_location
from kubescribe.modelcache.disk import Disk


def writer(data: bytes) -> Callable[[BinaryIO], None]:
    def write(out: BinaryIO) -> None:
        out.write(data)

    return write


def age(disk: Disk, key: str, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(disk.objects / key, (when, when))


def test_an_object_is_written_once_and_then_read_from_the_disk(tmp_path: Path) -> None:
    disk = Disk(tmp_path, max_bytes=100)
    assert disk.open("a") is None
    filled = disk.fill("a", 11, writer(b"model bytes"))
    assert filled.wrote and filled.file.read() == b"model bytes"
    again = disk.fill("a", 11, writer(b"other bytes"))
    assert not again.wrote and again.file.read() == b"model bytes"
    assert disk.usage() == len(b"model bytes")


def test_a_failed_fill_leaves_nothing_and_a_restart_clears_half_written_files(tmp_path: Path) -> None:
    disk = Disk(tmp_path, max_bytes=100)

    def broken(out: BinaryIO) -> None:
        out.write(b"half")
        raise OSError("the store went away")

    with pytest.raises(OSError, match="went away"):
        disk.fill("a", 4, broken)
    assert disk.open("a") is None
    assert list(disk.filling.iterdir()) == []
    (disk.filling / "tmp123").write_bytes(b"left by a killed process")
    assert list(Disk(tmp_path, max_bytes=100).filling.iterdir()) == []


def test_callers_of_one_object_wait_for_a_single_fill(tmp_path: Path) -> None:
    disk = Disk(tmp_path, max_bytes=100)
    writes: list[int] = []
    started = threading.Barrier(8)

    def slow(out: BinaryIO) -> None:
        writes.append(1)
        time.sleep(0.2)
        out.write(b"once")

    results: list[bytes] = []

    def caller() -> None:
        started.wait()
        results.append(disk.fill("a", 4, slow).file.read())

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert writes == [1]
    assert results == [b"once"] * 8


def test_beyond_its_cap_the_least_recently_used_objects_go(tmp_path: Path) -> None:
    disk = Disk(tmp_path, max_bytes=100)
    for key in ("old", "used", "new"):
        disk.fill(key, 40, writer(key[0].encode() * 40))
    # Three 40-byte objects: the cap kept two, and the oldest went.
    assert disk.open("old") is None
    age(disk, "used", 60)
    age(disk, "new", 120)
    assert disk.open("used") is not None  # reading marks it as just used
    filled = disk.fill("next", 40, writer(b"x" * 40))
    assert filled.evicted == 1
    assert disk.open("new") is None
    assert disk.open("used") is not None
    assert disk.usage() <= 100


def test_an_evicted_object_stays_readable_to_whoever_has_it_open(tmp_path: Path) -> None:
    disk = Disk(tmp_path, max_bytes=50)
    reading = disk.fill("a", 40, writer(b"a" * 40)).file
    disk.fill("b", 40, writer(b"b" * 40))
    assert disk.open("a") is None
    assert reading.read() == b"a" * 40


@pytest.mark.parametrize(
    "url",
    [
        "http://elsewhere:9000/models/model.bin?X-Amz-Signature=abc",
        "https://store:9000/models/model.bin",
        "http://user@store:9000/models/model.bin",
        "http://store:9001/models/model.bin",
        "http://store:9000/",
        "file:///etc/passwd",
    ],
)
def test_the_cache_reads_only_objects_of_its_own_store(url: str) -> None:
    with pytest.raises(HTTPException) as refused:
        store_location(url, "http://store:9000")
    assert refused.value.status_code == 400
    assert url not in str(refused.value.detail)


def test_an_object_of_the_store_is_known_by_its_path() -> None:
    assert store_location("http://STORE:9000/models/a/model.bin?X-Amz-Signature=x", "http://store:9000") == (
        "/models/a/model.bin"
    )
