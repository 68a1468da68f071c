"""The CLI's rendering of job views: progress bar and line, a job's summary, the jobs table."""

from __future__ import annotations

import io
from typing import Any

import pytest

from kubescribe.cli.render import (
    ProgressBlock,
    ProgressLine,
    describe_job,
    jobs_table,
    render_bar,
    render_batch,
    render_progress,
)


def test_bar_is_clamped() -> None:
    assert render_bar(0.5, 10) == "[#####-----]"
    assert render_bar(1.7, 4) == "[####]"
    assert render_bar(-1, 4) == "[----]"


def test_progress_of_a_running_job() -> None:
    job = {
        "phase": "Running",
        "progress": {"percent": 50.0, "processedSeconds": 30, "durationSeconds": 60, "etaSeconds": 95},
    }
    assert render_progress(job, 10) == "Running   [#####-----]  50%  30 s of 1m00s, about 1m35s left"


@pytest.mark.parametrize(
    ("job", "line"),
    [
        ({"phase": "Queued", "progress": None}, "Queued"),
        ({"phase": None}, "Pending"),
        ({"phase": "Running", "progress": None}, "Running   [----]"),
        ({"phase": "Succeeded", "progress": {"percent": 98.0, "etaSeconds": 1}}, "Succeeded [####] 100%"),
        ({"phase": "Failed", "progress": {"percent": 50.0}}, "Failed    [##--]  50%"),
    ],
)
def test_progress_of_other_phases(job: dict[str, Any], line: str) -> None:
    assert render_progress(job, 4) == line


def test_progress_line_off_a_terminal_writes_phase_changes_only() -> None:
    stream = io.StringIO()
    line = ProgressLine(stream)
    for text in ("Queued", "Running   [--] 1%", "Running   [#-] 50%", "Succeeded [##] 100%"):
        line.show(text)
    line.close()
    assert stream.getvalue().splitlines() == ["Queued", "Running   [--] 1%", "Succeeded [##] 100%"]


def test_summary_and_table() -> None:
    job = {
        "id": "tj-1",
        "namespace": "team-a",
        "phase": "Succeeded",
        "finished": True,
        "progress": {"percent": 100.0},
        "filename": "talk.mp3",
        "model": "small",
        "task": "transcribe",
        "language": None,
        "formats": ["srt", "json"],
        "result": {
            "language": "en",
            "languageProbability": 0.98,
            "durationSeconds": 75,
            "speakers": 2,
            "outputs": {"srt": "s3://t/x"},
        },
        "error": None,
    }
    summary = describe_job(job)
    assert "language:   detect" in summary
    assert "detected:   en (98%)" in summary
    assert "duration:   1m15s" in summary
    assert "output srt: s3://t/x" in summary
    assert "speakers:   2" in summary
    assert "progress" not in summary
    table = jobs_table([job, {"id": "tj-22", "phase": "Running", "progress": {"percent": 12.4}}]).splitlines()
    assert table[0].split() == ["ID", "PHASE", "PROGRESS", "MODEL", "CREATED", "FILE"]
    assert table[1].split() == ["tj-1", "Succeeded", "100%", "small", "talk.mp3"]
    assert table[2].split() == ["tj-22", "Running", "12%"]


def test_a_batch_is_a_line_per_file_and_a_total() -> None:
    batch = {
        "files": [
            {"id": "tj-1", "phase": "Running", "percent": 50.0},
            {"id": "tj-2", "phase": "Failed", "percent": None, "reason": "BadAudio", "message": "no samples"},
            {"id": "tj-3", "phase": "Queued", "percent": None, "filename": "c.wav"},
        ],
        "counts": {"Pending": 0, "Queued": 1, "Running": 1, "Failed": 1},
        "progress": {"percent": 50.0},
    }
    lines, keys = render_batch(batch, {"tj-1": "a.wav", "tj-2": "long-name.mp3"}, 10)
    assert lines == [
        "a.wav          Running   [#####-----]  50%",
        "long-name.mp3  Failed  BadAudio: no samples",
        "c.wav          Queued",
        "total          [#####-----]  50%  1 Queued, 1 Running, 1 Failed",
    ]
    assert keys == ["Running", "Failed", "Queued", "1 Queued, 1 Running, 1 Failed"]


def test_a_progress_block_off_a_terminal_writes_the_lines_that_changed() -> None:
    stream = io.StringIO()
    block = ProgressBlock(stream)
    block.show(["a Queued", "b Queued", "total 0%"], ["Queued", "Queued", "2 Queued"])
    block.show(["a Running 10%", "b Queued", "total 5%"], ["Running", "Queued", "2 Queued"])
    assert stream.getvalue().splitlines() == ["a Queued", "b Queued", "total 0%", "a Running 10%"]
