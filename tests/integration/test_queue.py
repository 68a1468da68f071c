"""Admission with a cluster-wide limit of one running job: priority, then arrival; and an operator killed while
jobs wait and run, then restarted by its Deployment, loses and repeats nothing."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Kubescribe, wait_for
from tests.integration.speech import PASSAGE, speak

SHORT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def one_at_a_time(kubescribe: Kubescribe) -> Iterator[Kubescribe]:
    kubescribe.install(**{"operator.maxRunningJobs": "1"})
    yield kubescribe
    kubescribe.install()


def phase(kubescribe: Kubescribe, namespace: str, name: str) -> str | None:
    return ((kubescribe.job(namespace, name) or {}).get("status") or {}).get("phase")


def submit_blocker(kubescribe: Kubescribe, namespace: str, speech_dir: Path) -> None:
    kubescribe.upload("audio", f"{namespace}/long.wav", speak(speech_dir, "long", PASSAGE, repeat=4))
    kubescribe.submit(
        namespace, "blocker", options={"vad": False}, source={"s3": {"bucket": "audio", "key": f"{namespace}/long.wav"}}
    )
    wait_for(lambda: phase(kubescribe, namespace, "blocker") == "Running", 60, "the blocker to run")


def test_queued_jobs_run_one_at_a_time_by_priority_then_arrival(
    one_at_a_time: Kubescribe, namespace: str, speech_dir: Path
) -> None:
    kubescribe = one_at_a_time
    submit_blocker(kubescribe, namespace, speech_dir)
    kubescribe.upload("audio", f"{namespace}/short.wav", speak(speech_dir, "short", SHORT))
    source = {"s3": {"bucket": "audio", "key": f"{namespace}/short.wav"}}
    for name, priority in (("first", 0), ("urgent", 10), ("last", 0)):
        kubescribe.submit(namespace, name, source=source, priority=priority)

    def positions() -> dict[str, int] | None:
        found = {
            name: (kubescribe.job(namespace, name) or {}).get("status", {}).get("queuePosition")
            for name in ("first", "urgent", "last")
        }
        return found if all(found.values()) else None

    assert wait_for(positions, 30, "queue positions") == {"urgent": 1, "first": 2, "last": 3}
    jobs = [kubescribe.wait_finished(namespace, name, timeout=300) for name in ("blocker", "urgent", "first", "last")]
    assert [job["status"]["phase"] for job in jobs] == ["Succeeded"] * 4
    spans = sorted(
        (job["status"]["startTime"], job["status"]["completionTime"], job["metadata"]["name"]) for job in jobs
    )
    assert [name for _, _, name in spans] == ["blocker", "urgent", "first", "last"]
    for (_, previous_end, _), (start, _, _) in itertools.pairwise(spans):
        assert start >= previous_end  # never two at once


def test_a_killed_operator_loses_and_repeats_nothing(
    one_at_a_time: Kubescribe, namespace: str, speech_dir: Path
) -> None:
    kubescribe = one_at_a_time
    submit_blocker(kubescribe, namespace, speech_dir)
    kubescribe.upload("audio", f"{namespace}/short.wav", speak(speech_dir, "short", SHORT))
    names = ["blocker", "queued-1", "queued-2"]
    for name in names[1:]:
        kubescribe.submit(namespace, name, source={"s3": {"bucket": "audio", "key": f"{namespace}/short.wav"}})
    wait_for(lambda: phase(kubescribe, namespace, "queued-2") == "Queued", 30, "the jobs to queue")

    os.kill(kubescribe.component_pid("operator"), signal.SIGKILL)

    jobs = [kubescribe.wait_finished(namespace, name, timeout=300) for name in names]
    assert [job["status"]["phase"] for job in jobs] == ["Succeeded"] * 3
    for name in names:
        assert len(kubescribe.runner_pods(namespace, name)) == 1
        assert kubescribe.job(namespace, name)["status"]["attempts"] == 1
        events = kubescribe.cluster.get("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
        assert [e["reason"] for e in events["items"]].count("Admitted") == 1
    restarts = kubescribe.cluster.get("pods", "-n", kubescribe.namespace, "-l", "app.kubernetes.io/component=operator")
    assert restarts["items"][0]["status"]["containerStatuses"][0]["restartCount"] == 1
