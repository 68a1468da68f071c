"""How the local node's kubelet API cuts and follows a container's log, as `kubectl logs` asks for it."""

import threading
from pathlib import Path

from localcluster.nodeagent.kubeletapi import LogSource, follow, tail

LOG = b"one\ntwo\nthree\n"


def test_tail_lines_then_limit_bytes() -> None:
    assert tail(LOG, None, None) == LOG
    assert tail(LOG, 2, None) == b"two\nthree\n"
    assert tail(LOG, 0, None) == b""
    assert tail(LOG, None, 5) == b"one\nt"
    assert tail(LOG, 2, 3) == b"two"


def test_follow_reads_what_is_written_until_the_container_stops(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(b"one\n")
    reads = 0

    def running() -> bool:
        nonlocal reads
        reads += 1
        if reads == 1:
            with path.open("ab") as log:
                log.write(b"two\n")
        return reads < 3

    followed = b"".join(follow(LogSource(path, running), 0, threading.Event()))
    assert followed == b"one\ntwo\n"
