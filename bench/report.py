"""The machine, the versions and the figures, as Markdown and JSON."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

import ctranslate2
import faster_whisper

from bench.kube import pinned_versions


def machine() -> dict[str, Any]:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    cpuinfo = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(int(meminfo["MemTotal"].split()[0]) / 2**20, 1),
        "cpu": cpuinfo[0].split(":", 1)[1].strip() if cpuinfo else platform.processor(),
        "kernel": platform.release(),
    }


def versions() -> dict[str, str]:
    pinned = pinned_versions()
    return {
        "python": platform.python_version(),
        "faster-whisper": faster_whisper.__version__,
        "ctranslate2": ctranslate2.__version__,
        "kubernetes": pinned["KUBERNETES_VERSION"],
        "etcd": pinned["ETCD_VERSION"],
        "helm": pinned["HELM_VERSION"],
    }


def header() -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
    }


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _seconds(value: Any) -> str:
    return f"{value:.2f} s" if isinstance(value, int | float) else "n/a"


def _ratio(value: Any, base: Any) -> str:
    return (
        f"{value / base:.2f}x" if isinstance(value, int | float) and isinstance(base, int | float) and base else "n/a"
    )


def markdown(results: dict[str, Any]) -> str:
    head = results["header"]
    machine_, versions_ = head["machine"], head["versions"]
    lines = [
        "# Kubescribe benchmark",
        "",
        f"- date: {head['date']}",
        f"- machine: {machine_['nproc']} CPUs ({machine_['cpu']}), {machine_['memory_gib']} GiB memory, "
        f"Linux {machine_['kernel']}, no GPU used",
        "- versions: " + ", ".join(f"{name} {version}" for name, version in versions_.items()),
        "- load average (1, 5, 15 min): "
        + "; ".join(f"{moment}: {value}" for moment, value in results["load"].items())
        + " (this machine may be shared with other work while the bench runs)",
        "",
    ]
    lines += _overhead_section(results.get("overhead"), results.get("overhead_error"))
    lines += _admission_section(results.get("admission"), results.get("admission_error"))
    return "\n".join(lines) + "\n"


def _overhead_section(overhead: dict[str, Any] | None, error: str | None) -> list[str]:
    lines = ["## 1. Runner overhead", ""]
    if overhead is None:
        return [*lines, f"Not measured: {error}", ""]
    lines += [
        f"Audio: {overhead['audio_seconds']:.1f} s of espeak-ng speech, 16 kHz mono WAV; model tiny.en "
        "(the packaged CTranslate2 copy), CPU int8, BatchedInferencePipeline batch size "
        f"{overhead['batch_size']}, VAD on, beam size 5, temperature 0, language detected.",
        "",
        "- baseline (bare): in this process, `WhisperModel(...)` load + `transcribe` of the file, every segment "
        "consumed, nothing written; faster-whisper's in-process cache of the VAD model is cleared before each "
        "round, so that both sides load it; imports are already done;",
        "- runner: `python -m kubescribe.runner` as a subprocess: interpreter start, imports, S3 download from "
        "the bench cluster's MinIO, decode, model load, transcription, json/txt/srt/vtt upload; no status "
        "reporting (no job name).",
        "",
        f"Rounds alternate bare, runner ({overhead['rounds']} of each); medians:",
        "",
        "| | wall time (median) | real-time factor | each round |",
        "| --- | --- | --- | --- |",
        f"| bare faster-whisper (baseline) | {overhead['bare_median_seconds']:.2f} s | "
        f"{overhead['bare_real_time_factor']:.4f} | {', '.join(f'{s:.2f}' for s in overhead['bare_seconds'])} |",
        f"| runner, whole path | {overhead['runner_median_seconds']:.2f} s | "
        f"{overhead['runner_real_time_factor']:.4f} | {', '.join(f'{s:.2f}' for s in overhead['runner_seconds'])} |",
        "",
        f"**Ratio runner / bare (medians): {overhead['ratio_runner_to_bare']:.3f}** (goal ≤ 1.10). "
        f"Fastest rounds: bare {overhead['bare_min_seconds']:.2f} s, runner {overhead['runner_min_seconds']:.2f} s, "
        f"ratio {overhead['ratio_of_minima']:.3f} (less sensitive to other load on the machine).",
        "",
        "The runner's own transcription step (from its `transcribed` log line; model load excluded) took "
        f"{', '.join(f'{s:.2f}' for s in overhead['runner_transcribe_seconds'])} s.",
        "",
    ]
    return lines


def _admission_section(admission: dict[str, Any] | None, error: str | None) -> list[str]:
    lines = ["## 2. Operator admission latency", ""]
    if admission is None:
        return [*lines, f"Not measured: {error}", ""]
    operator, baseline = admission["operator"], admission["baseline"]
    lines += [
        f"{operator['jobs']} TranscriptionJobs (`resources: {{gpu: 0}}`, `backoffLimit: 0`, an S3 source that does "
        f"not exist) created at once from {admission['create_threads']} threads in namespace `bench-jobs`; "
        "the operator installed with its Helm chart as `hack/demo.sh` does, with "
        + ", ".join(f"`{k}={v}`" for k, v in admission["helm_values"].items())
        + ". Latency of a job: from the client's clock just before its create call to the moment a watch on "
        "pods `app.kubernetes.io/component=runner` first shows its pod Running. Each pod is deleted as soon as it "
        "is seen Running, so that 200 runners do not overload the machine (a runner not yet deleted exits on its "
        "own with SourceNotFound). One step differs from the demo: after `helm upgrade --install`, `kubectl set "
        "env` gives the operator free ports for its health and metrics servers (KUBESCRIBE_LIVENESS_PORT, "
        "KUBESCRIBE_METRICS_PORT), since the node agent runs pods as host processes and another local cluster's "
        "operator on this machine may hold 8080 and 9090; `kubectl rollout status` then waits for it, as `--wait` "
        "does in the demo.",
        "",
        f"Baseline: {baseline['jobs']} plain batch/v1 Jobs with the same runner container and spec, created the same "
        "way straight into the same cluster (namespace `bench-baseline`, while the operator ran idle): the "
        'latency of the control plane and the node agents alone, without the operator. The rows "to pod '
        "created\" stop when the watch first sees the job's pod at all, before a node starts it: that part is "
        "the admission path (operator and Job controller, or the Job controller alone), the rest is scheduling "
        "and the node agents starting processes.",
        "",
        "| | TranscriptionJobs via the operator | plain Jobs (baseline) | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for figure, label in (("to_running", "to Running"), ("to_pod_created", "to pod created (first seen)")):
        ours, base = operator[figure], baseline[figure]
        for key in ("min", "p50", "p90", "p99", "max"):
            lines.append(
                f"| {label}, {key} | {_seconds(ours.get(key))} | {_seconds(base.get(key))} | "
                f"{_ratio(ours.get(key), base.get(key))} |"
            )
    lines += [
        f"| reached Running within {operator['timeout_seconds']:.0f} s | {operator['reached_running']} / "
        f"{operator['jobs']} | {baseline['reached_running']} / {baseline['jobs']} | |",
        f"| first seen already exited (counted at that moment) | {operator['first_seen_already_exited']} | "
        f"{baseline['first_seen_already_exited']} | |",
        f"| spread of the create calls | {operator['submission_spread_seconds']:.2f} s | "
        f"{baseline['submission_spread_seconds']:.2f} s | |",
        "",
    ]
    for name, burst in (("operator", operator), ("baseline", baseline)):
        if burst["create_errors"]:
            lines.append(f"Create errors ({name}, first few): {'; '.join(burst['create_errors'])}")
    lines.append(f"Clean-up: {admission['cleanup']}")
    lines.append("")
    return lines


def write(directory: Path, results: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(results, indent=2) + "\n")
    path = directory / "report.md"
    path.write_text(markdown(results))
    return path
