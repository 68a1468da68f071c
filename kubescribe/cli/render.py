"""Job and batch views as text: the progress bar and line, a batch's lines, a job's summary, and tables. Nothing
here does I/O but `ProgressLine` and `ProgressBlock`, which write to the stream they are given."""

from __future__ import annotations

import shutil
from typing import IO, Any


def render_bar(fraction: float, width: int) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _seconds(value: float) -> str:
    value = round(value)
    if value < 60:
        return f"{value} s"
    minutes, seconds = divmod(value, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def render_progress(job: dict[str, Any], width: int = 30) -> str:
    """One line about a job: its phase and, while it runs, a bar with the share done and the time left."""
    phase = job.get("phase") or "Pending"
    progress = job.get("progress") or {}
    percent = progress.get("percent")
    if phase == "Succeeded":
        percent = 100.0
    if percent is None:
        return f"{phase:<9} {render_bar(0, width)}" if phase == "Running" else phase
    line = f"{phase:<9} {render_bar(percent / 100, width)} {int(percent):3d}%"
    processed, duration = progress.get("processedSeconds"), progress.get("durationSeconds")
    if phase == "Running" and processed is not None and duration:
        line += f"  {_seconds(processed)} of {_seconds(duration)}"
    eta = progress.get("etaSeconds")
    if phase == "Running" and eta is not None:
        line += f", about {_seconds(eta)} left"
    return line


class ProgressLine:
    """Redraws one status line on a terminal; elsewhere (a log, a pipe) writes a line when the phase changes."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.shown = ""

    def show(self, text: str) -> None:
        if self.tty:
            width = shutil.get_terminal_size().columns - 1
            self.stream.write("\r" + text[:width].ljust(min(width, max(len(self.shown), len(text)))))
            self.stream.flush()
        elif text.split(" ", 1)[0] != self.shown.split(" ", 1)[0]:
            self.stream.write(text + "\n")
            self.stream.flush()
        self.shown = text

    def close(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()
        self.shown = ""


class ProgressBlock:
    """Redraws a block of lines on a terminal; elsewhere (a log, a pipe) writes each line whose key (what a reader
    of the log wants to hear of, such as a file's phase) changed."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.shown: list[str] = []
        self.keys: list[str] = []

    def show(self, lines: list[str], keys: list[str]) -> None:
        if self.tty:
            width = shutil.get_terminal_size().columns - 1
            up = f"\x1b[{len(self.shown)}F" if self.shown else ""
            self.stream.write(up + "".join(f"\x1b[2K{line[:width]}\n" for line in lines))
            self.stream.flush()
        else:
            changed = [
                line for i, (line, key) in enumerate(zip(lines, keys, strict=True)) if self.keys[i : i + 1] != [key]
            ]
            self.stream.write("".join(f"{line}\n" for line in changed))
            self.stream.flush()
        self.shown, self.keys = lines, keys


def _batch_file_line(file: dict[str, Any], width: int) -> str:
    job = {"phase": file.get("phase"), "progress": {"percent": file.get("percent")}}
    line = render_progress(job, width)
    if file.get("reason"):
        line += f"  {file['reason']}: {file.get('message') or ''}".rstrip(": ")
    return line


def render_batch(batch: dict[str, Any], names: dict[str, str], width: int = 20) -> tuple[list[str], list[str]]:
    """A batch view as one line per file (the name `names` gives its job, then its progress) and a total line; and
    the lines' keys: each file's phase, and the phases' counts."""
    files = batch.get("files") or []
    labels = [names.get(file["id"], file.get("filename") or file["id"]) for file in files]
    pad = max([len(label) for label in labels] + [len("total")])
    lines = [f"{label:<{pad}}  {_batch_file_line(file, width)}" for label, file in zip(labels, files, strict=True)]
    percent = (batch.get("progress") or {}).get("percent") or 0.0
    counts = ", ".join(f"{count} {phase}" for phase, count in (batch.get("counts") or {}).items() if count)
    lines.append(f"{'total':<{pad}}  {render_bar(percent / 100, width)} {int(percent):3d}%  {counts}")
    return lines, [str(file.get("phase")) for file in files] + [counts]


def describe_job(job: dict[str, Any]) -> str:
    """A readable summary of a job view."""
    rows = [
        ("id", job.get("id")),
        ("namespace", job.get("namespace")),
        ("phase", job.get("phase")),
        ("created", job.get("created")),
        ("file", job.get("filename")),
        ("model", job.get("model")),
        ("task", job.get("task")),
        ("language", job.get("language") or "detect"),
        ("formats", ", ".join(job.get("formats") or [])),
    ]
    if not job.get("finished") and job.get("progress"):
        rows.append(("progress", render_progress(job, 20).split(" ", 1)[1].strip()))
    if result := job.get("result"):
        probability = result.get("languageProbability")
        language = result.get("language") or "?"
        rows.append(("detected", f"{language} ({probability:.0%})" if probability is not None else language))
        if result.get("durationSeconds") is not None:
            rows.append(("duration", _seconds(result["durationSeconds"])))
        if result.get("realTimeFactor") is not None:
            rows.append(("speed", f"{result['realTimeFactor']:.2f} of real time"))
        if result.get("speakers") is not None:
            rows.append(("speakers", str(result["speakers"])))
        rows.extend((f"output {name}", uri) for name, uri in sorted((result.get("outputs") or {}).items()))
    if error := job.get("error"):
        rows.append(("error", f"{error.get('reason')}: {error.get('message')}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name + ':':<{width + 1}} {value}" for name, value in rows if value not in (None, ""))


def table(rows: list[tuple[str, ...]]) -> str:
    """Rows as left-aligned columns; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]) for row in rows)


def jobs_table(jobs: list[dict[str, Any]]) -> str:
    rows: list[tuple[str, ...]] = [("ID", "PHASE", "PROGRESS", "MODEL", "CREATED", "FILE")]
    for job in jobs:
        percent = (job.get("progress") or {}).get("percent")
        shown = "100%" if job.get("phase") == "Succeeded" else "" if percent is None else f"{percent:.0f}%"
        fields = (job.get("id"), job.get("phase"), shown, job.get("model"), job.get("created"), job.get("filename"))
        rows.append(tuple(str(field or "") for field in fields))
    return table(rows)
