"""The machine, the versions and the figures, as Markdown and JSON."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
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
        "gpu": _gpu_name(),
    }


def _gpu_name() -> str | None:
    """The first NVIDIA GPU that faster-whisper would use, as nvidia-smi names it."""
    if ctranslate2.get_cuda_device_count() == 0 or shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
    names = subprocess.run(query, check=False, capture_output=True, text=True).stdout.split("\n")
    return names[0].strip() or "an NVIDIA GPU"


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
        f"Linux {machine_['kernel']}, "
        + (
            f"{machine_['gpu']} (part 9 only: the local cluster's runners use the CPU)"
            if machine_.get("gpu")
            else "no GPU"
        ),
        "- versions: " + ", ".join(f"{name} {version}" for name, version in versions_.items()),
        "- load average (1, 5, 15 min): "
        + "; ".join(f"{moment}: {value}" for moment, value in results["load"].items())
        + " (this machine may be shared with other work while the bench runs)",
        "",
    ]
    lines += _overhead_section(results.get("overhead"), results.get("overhead_error"))
    lines += _admission_section(results.get("admission"), results.get("admission_error"))
    lines += _gateway_section(results.get("gateway"), results.get("gateway_error"))
    lines += _latency_section(results.get("latency"), results.get("latency_error"))
    lines += _short_jobs_section(results.get("shortjobs"), results.get("shortjobs_error"))
    lines += _model_cache_section(results.get("modelcache"), results.get("modelcache_error"))
    lines += _diarization_section(results.get("diarization"), results.get("diarization_error"))
    lines += _beam_section(results.get("beam"), results.get("beam_error"))
    lines += _warm_model_section(results.get("warmmodel"), results.get("warmmodel_error"))
    return "\n".join(lines) + "\n"


def _overhead_section(overhead: dict[str, Any] | None, error: str | None) -> list[str]:
    lines = ["## 1. Runner overhead", ""]
    if overhead is None:
        return [*lines, f"Not measured: {error or 'not requested (--parts)'}", ""]
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
        return [*lines, f"Not measured: {error or 'not requested (--parts)'}", ""]
    operator, baseline = admission["operator"], admission["baseline"]
    lines += [
        f"{operator['jobs']} TranscriptionJobs (`resources: {{gpu: 0}}`, `backoffLimit: 0`, an S3 source that does "
        f"not exist) created at once from {admission['create_threads']} threads in namespace `bench-jobs`; "
        "the operator installed with its Helm chart as `hack/demo.sh` does, with "
        + ", ".join(f"`{k}={v}`" for k, v in admission["helm_values"].items())
        + ". Latency of a job: from the client's clock just before its create call to the moment a watch on "
        "pods `app.kubernetes.io/component=runner` first shows its pod Running. Each pod is deleted as soon as it "
        "is seen Running, so that 200 runners do not overload the machine (a runner not yet deleted exits on its "
        "own with SourceNotFound). Two settings differ from the demo: the operator's health and metrics servers and "
        "the gateway listen on free ports (`operator.ports.*`, `gateway.port`), since the node agent runs pods as "
        "host processes and another local cluster on this machine may hold 8080, 9090 and 8000; `kubectl rollout "
        "status` then waits for the operator, as `--wait` does in the demo. And `runner.memoryLimit` is 64Mi, not "
        "the demo's 1Gi, so that 200 runner pods fit on the local nodes as the 200 plain Jobs do (the node "
        "schedules by the memory request a limit implies, and enforces none).",
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


def _gateway_section(gateway: dict[str, Any] | None, error: str | None) -> list[str]:
    lines = ["## 3. Gateway", ""]
    if gateway is None:
        return [*lines, f"Not measured: {error or 'not requested (--parts)'}", ""]
    upload, rss, lookups = gateway["upload"], gateway["upload"]["rss"], gateway["lookups"]
    size_mib = upload["bytes"] / 2**20
    lines += [
        "The chart's gateway, installed into the same cluster by `helm upgrade --reuse-values` with "
        + ", ".join(f"`{k}={v}`" for k, v in gateway["helm_values"].items())
        + " (a free port, since the node agent runs pods on the host's network; no node has 8 GPUs, so the runner "
        "pod of an uploaded job is never scheduled and nothing transcribes it).",
        "",
        f"### Upload throughput ({size_mib:.0f} MiB)",
        "",
        f"The file: {upload['bytes']} bytes, a 48 kHz stereo 16-bit WAV of {gateway['audio_seconds']:.0f} s "
        f"({gateway['audio_seconds'] / 3600:.2f} h: a spoken sentence, then silence). Both sides "
        "send it from the same disk to the same MinIO, alternating, direct first "
        f"({upload['rounds']} rounds of each):",
        "",
        f"- direct: minio's `fput_object` with the gateway's part size ({upload['part_size_bytes'] >> 20} MiB) and "
        "one part in flight (`num_parallel_uploads=1`), as the gateway's `put_object` does;",
        "- gateway: `POST /v1/jobs`, the file streamed as multipart form data by httpx on one connection; the time "
        "runs until the 202 answer, so it covers the gateway's whole path (receiving the body, the audio check, "
        "the S3 upload, creating the TranscriptionJob). Each job is then deleted (`DELETE /v1/jobs/{id}`) and "
        "the bench waits until it is gone, with its uploaded audio, before the next round.",
        "",
        "| | median | each round (s) |",
        "| --- | --- | --- |",
        f"| direct S3 PUT (baseline) | {upload['direct_mib_per_second']:.1f} MiB/s | "
        f"{', '.join(f'{s:.2f}' for s in upload['direct_seconds'])} |",
        f"| through the gateway | {upload['gateway_mib_per_second']:.1f} MiB/s | "
        f"{', '.join(f'{s:.2f}' for s in upload['gateway_seconds'])} |",
        "",
        f"**Ratio gateway / direct (medians): {upload['ratio_gateway_to_direct']:.3f}** (goal ≥ 0.8).",
        "",
        "### Gateway memory during the uploads",
        "",
        "VmRSS of the gateway's process (the pid in its pod's containerID; with its descendants, if any), read "
        f"from /proc every {rss['sample_seconds'] * 1000:.0f} ms while each upload ran.",
        "",
        f"**Peak RSS growth: {rss['growth_mib']:.1f} MiB** (goal ≤ 64 MiB): {rss['baseline_mib']:.1f} MiB before "
        f"the first upload, {rss['peak_mib']:.1f} MiB at the highest. VmHWM (the process's own high-water mark) "
        f"was {rss['hwm_before_mib']:.1f} MiB before the uploads and {rss['hwm_after_mib']:.1f} MiB after them.",
        "",
        "| round | RSS before | peak | growth | after | samples |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for number, each in enumerate(rss["each_round"], 1):
        lines.append(
            f"| {number} | {each['rss_before_mib']:.1f} MiB | {each['rss_peak_mib']:.1f} MiB | "
            f"{each['growth_mib']:.1f} MiB | {each['rss_after_mib']:.1f} MiB | {each['samples']} |"
        )
    health, job = lookups["healthz"], lookups["job"]
    lines += [
        "",
        "### Job lookups",
        "",
        f"{lookups['threads']} client threads in the bench's process, each with its own keep-alive httpx "
        f"connection, send requests back to back for {job['seconds']:.0f} s: first `GET /healthz` (no "
        f"authentication, no Kubernetes call: the baseline), then `GET /v1/jobs/{{id}}` of one small job "
        f"({lookups['job_phase']}, its runner pod unschedulable) with an API key. The clients share the machine's "
        "CPUs with the gateway and the cluster.",
        "",
        "| | requests/s | p50 | p99 | requests | non-200 answers |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, figures in (("GET /healthz (baseline)", health), ("GET /v1/jobs/{id}", job)):
        non_200 = ", ".join(f"{status}: {n}" for status, n in figures["non_200"].items()) or "none"
        lines.append(
            f"| {label} | {figures['requests_per_second']:.1f} | {figures['p50_ms']:.2f} ms | "
            f"{figures['p99_ms']:.2f} ms | {figures['requests']} | {non_200} |"
        )
    lines += [
        "",
        f"**Ratio job lookup / healthz (requests/s): {lookups['ratio_job_to_healthz']:.3f}**.",
        "",
        *_batch_lines(gateway["batch"]),
    ]
    return lines


def _batch_lines(batch: dict[str, Any]) -> list[str]:
    def requests(counts: dict[str, int]) -> str:
        on_jobs = ", ".join(f"{verb} {n}" for verb, n in counts.items() if verb != "all")
        return f"{on_jobs or 'none'}; {counts.get('all', 0)} in all"

    return [
        f"### A batch of {batch['files']:,} sources",
        "",
        f"`POST /v1/batches` with {batch['files']:,} `s3://` sources and one set of options, timed until its answer "
        f"({batch['jobs_created']:,} jobs created; the gateway dry-runs each job, then creates them, a few at a "
        f"time). Baseline: the same number of TranscriptionJobs created one after another by one Kubernetes client "
        "straight against the API server. Requests are the API server's own count (`apiserver_request_total`) "
        "before and after each side: on TranscriptionJobs by verb, and in all (the operator's and the node agents' "
        "meanwhile included).",
        "",
        "| | seconds | API server requests |",
        "| --- | --- | --- |",
        f"| one by one (baseline) | {batch['one_by_one_seconds']:.2f} | {requests(batch['one_by_one_requests'])} |",
        f"| one batch | {batch['batch_seconds']:.2f} | {requests(batch['batch_requests'])} |",
        "",
        f"**Ratio batch / one by one (seconds): {batch['ratio_batch_to_one_by_one']:.3f}**.",
        "",
    ]


LATENCY_MARKS = {
    "created": "the job first seen (upload, audio check, S3 upload, create)",
    "Pending/Admitted": "admitted by the operator",
    "Running": "Running (the runner pod, or the pool's assignment, created)",
    "Running/PodRunning": "the runner pod running",
    "Running/WorkerRunning": "the pool's worker running it",
    "Succeeded": "Succeeded (transcripts written)",
    "answered": "the answer (transcript read, job deleted)",
}


def _latency_section(latency: dict[str, Any] | None, error: str | None) -> list[str]:
    lines = ["## 4. Latency of /v1/audio/transcriptions", ""]
    if latency is None:
        return [*lines, f"Not measured: {error or 'not requested (--parts)'}", ""]
    marks, each = latency["breakdown_median_seconds"], latency["breakdown_each_round"]
    lines += [
        f"A clip of {latency['audio_seconds']:.1f} s of espeak-ng speech (16 kHz mono WAV), transcribed with tiny.en "
        f"on the CPU (int8, BatchedInferencePipeline batch size {latency['batch_size']}, VAD on, beam 5, "
        "temperature 0):",
        "",
        "- baseline (bare): in the bench's process, the model loaded once beforehand with the runner's `load_model`; "
        "each round decodes the file (`load_audio`) and transcribes it (`transcribe`) as the runner does;",
        "- gateway: `POST /v1/audio/transcriptions` (multipart, `model=whisper-1`, a json answer) with httpx, timed "
        "until the answer: the upload, the TranscriptionJob, the operator's runner pod on a local node (`gateway."
        "jobGpus=0`: process start, download, model load, transcription, uploads), the gateway reading the "
        "transcript and deleting the job;",
        "- pooled: the same request once the release runs a runner pool (one worker, tiny.en, concurrency 1) that "
        "serves the bench's namespace: the operator assigns the job to the warm worker instead of creating a pod.",
        "",
        f"One uncounted round of each first, then {latency['rounds']} of each, alternating, bare first: the pod's "
        "rounds, then the pool's, each with bare rounds of its own (the bare column has them all).",
        "",
        "| | median | p90 | each round (s) |",
        "| --- | --- | --- | --- |",
        f"| bare faster-whisper, model loaded (baseline) | {latency['bare_median_seconds']:.2f} s | "
        f"{latency['bare_p90_seconds']:.2f} s | {', '.join(f'{s:.2f}' for s in latency['bare_seconds'])} |",
        f"| POST /v1/audio/transcriptions | {latency['gateway_median_seconds']:.2f} s | "
        f"{latency['gateway_p90_seconds']:.2f} s | {', '.join(f'{s:.2f}' for s in latency['gateway_seconds'])} |",
        f"| POST /v1/audio/transcriptions, pooled | {latency['pooled_median_seconds']:.2f} s | "
        f"{latency['pooled_p90_seconds']:.2f} s | {', '.join(f'{s:.2f}' for s in latency['pooled_seconds'])} |",
        "",
        f"**Ratio gateway / bare (medians): {latency['ratio_gateway_to_bare']:.3f} with a pod per request, "
        f"{latency['ratio_pooled_to_bare']:.3f} through the pool** (target ≤ {latency['target_ratio']:.1f}).",
        "",
        "Where the gateway's time goes: seconds from the request's start until a watch of the namespace's "
        "TranscriptionJobs first saw each of these (the watch's own lag included):",
        "",
        "| until | median, pod | median, pooled | each round with a pod (s) |",
        "| --- | --- | --- | --- |",
    ]
    pooled = latency["pooled_breakdown_median_seconds"]
    for key, label in LATENCY_MARKS.items():
        rounds = ", ".join(_seconds(marks.get(key)).removesuffix(" s") for marks in each)
        lines.append(f"| {label} | {_seconds(marks.get(key))} | {_seconds(pooled.get(key))} | {rounds} |")
    lines += [
        "",
        "The runner's own transcription step (its status's realTimeFactor times its duration; model load excluded, "
        "but in a fresh process: the VAD model's load, which the bare side has cached, and its progress reports "
        "included): "
        f"{_seconds(marks.get('runner transcription'))} (median). The two sides' last texts were "
        f"{'the same' if len(set(latency['texts'].values())) == 1 else 'different'}.",
        "",
    ]
    return lines


def _short_jobs_section(short: dict[str, Any] | None, error: str | None) -> list[str]:
    lines = ["## 5. Many short jobs: runner pods against a pool", ""]
    if short is None:
        return [*lines, f"Not measured: {error or 'not requested (--parts)'}", ""]
    pods, pooled = short["pods"], short["pooled"]
    clips = ", ".join(f"{seconds:.1f}" for seconds in short["clip_seconds"])
    lines += [
        f"{pods['jobs']} TranscriptionJobs created at once, of espeak-ng clips of {clips} s in turn (tiny.en on the "
        f"CPU, txt out), at most {short['running']} running at once (`operator.maxRunningJobs`): first each in a "
        "runner pod of its own (`execution: Isolated`), then in a runner pool of one warm worker with concurrency "
        f"{short['running']} (`execution: Pooled`). A job's completion is from its creation until a watch of the "
        "namespace saw it Succeeded; wall time is from the first creation until the last job succeeded.",
        "",
        "| | wall | jobs/s | audio s/s | completion p50 | p99 | max |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, side in (("a runner pod per job (baseline)", pods), ("a pool's warm worker", pooled)):
        lines.append(
            f"| {label} | {_seconds(side['wall_seconds'])} | {side['jobs_per_second']:.2f} | "
            f"{side['audio_seconds_per_second']:.1f} | {_seconds(side['completion_p50_seconds'])} | "
            f"{_seconds(side['completion_p99_seconds'])} | {_seconds(side['completion_max_seconds'])} |"
        )
    lines += [
        "",
        f"**Throughput pooled / pods: {short['ratio_throughput_pooled_to_pods']:.2f}x; completion p50 "
        f"{short['ratio_p50_pooled_to_pods']:.3f}, p99 {short['ratio_p99_pooled_to_pods']:.3f} of the pods'.**",
        "",
    ]
    return lines


def _model_cache_section(cache: dict[str, Any] | None, error: str | None) -> list[str]:
    lines = ["## 6. A shared model through the node's model cache", ""]
    if cache is None:
        return [*lines, f"Not measured: {error or 'not requested (--parts)'}", ""]
    lines += [
        f"{cache['jobs']} fetches in turn of the `base` model's files ({cache['model_bytes'] / (1 << 20):.0f} MiB) "
        "from the local cluster's store with their presigned URLs, as runner pods of one node fetch a shared "
        "`s3://` model, each into a directory of its own: straight from the store, then through a model cache "
        "process on the same machine (`kubescribe-model-cache`). The store is on this machine's loopback, as near "
        "as the cache: what carries over to a cluster, whose store is across a network, is the bytes it sent.",
        "",
        "| | first fetch | later fetches (median) | all fetches | bytes the store sent |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, side in (
        ("straight from the store (baseline)", cache["direct"]),
        ("through the cache", cache["cached"]),
    ):
        lines.append(
            f"| {label} | {_seconds(side['first_seconds'])} | {_seconds(side['later_median_seconds'])} | "
            f"{_seconds(side['total_seconds'])} | {side['store_bytes'] / (1 << 20):,.0f} MiB |"
        )
    lines += [
        "",
        f"**Bytes from the store, cached / straight: {cache['ratio_store_bytes_cached_to_direct']:.3f}; a later "
        f"fetch takes {cache['ratio_later_cached_to_direct']:.2f}x the time of a straight one.**",
        "",
    ]
    return lines


def _diarization_section(diarization: dict[str, Any] | None, error: str | None) -> list[str]:
    lines = ["## 7. Diarization", ""]
    if diarization is None:
        return [*lines, f"Not measured: {error or 'not requested (--parts)'}", ""]
    conversations = diarization["conversations"]
    lines += [
        "Conversations of 12 turns spoken by distinct espeak-ng voices in rotation, 0.6 s of silence after each "
        "turn; the reference is when each turn was spoken. In this process, as the runner does it: tiny.en on the "
        "CPU (int8, VAD on, beam 5), then `diarize` (Resemblyzer's voice encoder in numpy, agglomerative "
        "clustering; the number of speakers found, not given). The diarization error rate is "
        "(missed + false alarm + confusion) / reference speech, frame by frame (10 ms) with no collar, under the "
        "best mapping of labels to speakers (with a 0.25 s collar around each turn's edges in its own column); "
        "missed and false alarm come from where the transcript's segments start and end. Each round transcribes "
        "and diarizes again; the figures are the round of the median DER. Times are medians of "
        f"{diarization['rounds']} rounds on the same audio: a plain transcription, the transcription with word times "
        "(which diarization asks for), and the diarization.",
        "",
        "| conversation | audio | speakers found | DER | each round | missed | false alarm | confusion | "
        "DER, 0.25 s collar | transcribe | with word times | diarize | diarize / transcribe | diarized job / plain |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, figures in conversations.items():
        transcribe_, words, diarize_ = (
            statistics.median(figures[key])
            for key in ("transcribe_seconds", "transcribe_with_words_seconds", "diarize_seconds")
        )
        lines.append(
            f"| {name} ({', '.join(figures['voices'])}) | {figures['audio_seconds']:.1f} s | "
            f"{figures['speakers_found']} of {len(figures['voices'])} | {figures['der']:.1%} | "
            f"{', '.join(f'{der:.1%}' for der in figures['der_each_round'])} | "
            f"{figures['missed']:.1%} | {figures['false_alarm']:.1%} | {figures['confusion']:.1%} | "
            f"{figures['der_collar']:.1%} | {transcribe_:.2f} s | {words:.2f} s | {diarize_:.2f} s | "
            f"**{figures['ratio_diarize_to_transcribe']:.3f}** | {figures['ratio_diarized_job_to_plain']:.3f} |"
        )
    return [*lines, ""]


def _beam_section(beam: dict[str, Any] | None, error: str | None) -> list[str]:
    lines = ["## 8. Beam size", ""]
    if beam is None:
        return [*lines, f"Not measured: {error or 'not requested (--parts)'}", ""]
    lines += [
        f"The sample of part 1 ({beam['audio_seconds']:.1f} s) transcribed as the runner does on a CPU (tiny.en, int8, "
        f"BatchedInferencePipeline batch size {beam['batch_size']}, VAD on, temperature 0) with `beamSize` 5 (the "
        "default) and 1 (greedy), alternating, in the bench's process with the model loaded once (one greedy "
        f"round first, uncounted, to warm up); {beam['rounds']} rounds of each, every segment consumed.",
        "",
        "| beam size | wall time (median) | each round (s) | word error rate |",
        "| --- | --- | --- | --- |",
    ]
    for size in (5, 1):
        lines.append(
            f"| {size}{' (baseline)' if size == 5 else ''} | {beam[f'beam_{size}_median_seconds']:.2f} s | "
            f"{', '.join(f'{s:.2f}' for s in beam[f'beam_{size}_seconds'])} | "
            f"{beam[f'beam_{size}_word_error_rate']:.3f} |"
        )
    lines += ["", f"**Ratio beam 1 / beam 5 (medians): {beam['ratio_greedy_to_beam']:.3f}**.", ""]
    return lines


def _warm_model_section(warm: dict[str, Any] | None, error: str | None) -> list[str]:
    lines = ["## 9. A warm model against a process per job", ""]
    if warm is None:
        return [*lines, f"Not measured: {error or 'not requested (--parts)'}", ""]
    per_job, pooled = warm["per_job"], warm["warm"]
    lines += [
        f"{warm['jobs']} jobs of {warm['audio_seconds_per_job']:.0f} s of speech each, `{warm['model']}` on "
        f"{warm['device']}, each transcribed by the runner's `transcribe` (BatchedInferencePipeline, VAD on, beam 5): "
        f"{warm['jobs']} processes started at once, each importing the runner and loading its own model as a runner "
        f"pod does (the baseline, timed from the first start to the last exit), against one process that loads the "
        f"model once with `num_workers={warm['jobs']}` and runs the jobs in as many threads, as a pool's worker does "
        "(timed from the jobs' start, the model already loaded). Transcripts of both sides "
        + ("are the same." if warm["same_transcripts"] else "differ."),
        "",
        "| | wall time | model load (s) | audio-seconds per second | memory per process (RSS, MiB) | GPU memory per "
        "process (MiB) | GPU utilisation (mean, max) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, side, rate in (
        ("a process per job (baseline)", per_job, warm["per_job_audio_seconds_per_second"]),
        ("one warm model", pooled, warm["warm_audio_seconds_per_second"]),
    ):
        wall = side["wall_seconds"] if side is per_job else side["transcribe_seconds"][0]
        gpu_memory = side.get("gpu_memory_peak_mib_per_process", "n/a")
        utilisation = (
            f"{side['gpu_utilisation_mean_percent']:.0f}%, {side['gpu_utilisation_max_percent']:.0f}%"
            if "gpu_utilisation_mean_percent" in side
            else "n/a"
        )
        lines.append(
            f"| {name} | {wall:.2f} s | {statistics.median(side['load_seconds']):.2f} | {rate:.1f} | "
            f"{statistics.median(side['max_rss_mib']):.0f} | {gpu_memory} | {utilisation} |"
        )
    lines += [
        "",
        f"**Audio-seconds per second, warm model / a process per job: {warm['ratio_warm_to_per_job']:.2f}** "
        f"({warm['warm_with_start_audio_seconds_per_second']:.1f} for the warm process counted from its start, "
        "imports and model load included).",
        "",
    ]
    return lines


def write(directory: Path, results: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(results, indent=2) + "\n")
    path = directory / "report.md"
    path.write_text(markdown(results))
    return path
