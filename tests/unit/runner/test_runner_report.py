from typing import Any

import pytest

from kubescribe.api.v1alpha1 import Result
from kubescribe.runner.report import ProgressReporter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reporter(duration: float = 100.0) -> tuple[ProgressReporter, FakeClock, list[dict[str, Any]]]:
    clock = FakeClock()
    patches: list[dict[str, Any]] = []
    return ProgressReporter(patches.append, duration, clock=clock), clock, patches


def test_reports_at_most_once_a_second() -> None:
    reporter, clock, patches = _reporter()
    reporter.update(0.0)
    for processed in (5.0, 10.0, 15.0):
        clock.now += 0.3
        reporter.update(processed)
    assert len(patches) == 1
    clock.now += 0.2
    reporter.update(20.0)
    assert len(patches) == 2
    assert patches[1]["status"]["progress"]["processedSeconds"] == 20.0


def test_mid_run_percent_and_eta() -> None:
    reporter, clock, patches = _reporter(duration=200.0)
    clock.now += 10
    reporter.update(50.0)
    progress = patches[0]["status"]["progress"]
    assert progress == {"percent": 25.0, "processedSeconds": 50.0, "durationSeconds": 200.0, "etaSeconds": 30.0}
    clock.now += 10
    reporter.update(200.0)
    last = patches[1]["status"]["progress"]
    assert 0 < last["percent"] < 100
    assert last["etaSeconds"] == 0


def test_no_eta_before_anything_is_done() -> None:
    reporter, _, patches = _reporter()
    reporter.update(0.0)
    assert patches[0] == {"status": {"progress": {"percent": 0.0, "processedSeconds": 0.0, "durationSeconds": 100.0}}}


def test_final_report_is_always_sent() -> None:
    reporter, _, patches = _reporter()
    reporter.update(99.0)
    result = Result(language="en", language_probability=1.0, duration_seconds=100.0, outputs={"txt": "s3://b/k.txt"})
    reporter.finish(result)
    assert len(patches) == 2
    assert patches[1]["status"] == {
        "progress": {"percent": 100.0, "processedSeconds": 100.0, "durationSeconds": 100.0, "etaSeconds": 0.0},
        "result": {
            "language": "en",
            "languageProbability": 1.0,
            "durationSeconds": 100.0,
            "outputs": {"txt": "s3://b/k.txt"},
        },
    }


def test_reporting_errors_are_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    calls = []

    def failing(body: dict[str, Any]) -> None:
        calls.append(body)
        raise ConnectionError("the API server is away")

    reporter = ProgressReporter(failing, 10.0, clock=clock, sleep=lambda _: None)
    reporter.update(1.0)
    reporter.finish(Result())
    assert len(calls) == 5  # one update, the final report four times
    assert {record.levelname for record in caplog.records} == {"WARNING"}


def test_nothing_is_sent_without_a_job() -> None:
    reporter = ProgressReporter(None, 10.0)
    reporter.update(5.0)
    reporter.finish(Result())


def test_the_final_report_is_tried_again_and_never_raises() -> None:
    sent: list[dict[str, Any]] = []
    failures = iter([RuntimeError("the API server is restarting")] * 2)

    def flaky(body: dict[str, Any]) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        sent.append(body)

    pauses: list[float] = []
    ProgressReporter(flaky, 10.0, sleep=pauses.append).finish(Result(language="en"))
    assert pauses == [1.0, 2.0]
    assert sent[0]["status"]["result"] == {"language": "en", "outputs": {}}

    def down(body: dict[str, Any]) -> None:
        raise RuntimeError("the API server is down")

    pauses.clear()
    ProgressReporter(down, 10.0, sleep=pauses.append).finish(Result(language="en"))
    assert pauses == [1.0, 2.0, 4.0]
