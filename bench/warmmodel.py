"""A warm model against a process per job: the same jobs (one long file each, transcribed by the runner's
`transcribe`) run by one process with one model loaded once with `num_workers` = jobs, a thread per job, as a pool's
worker runs them, and by a process per job started at once, each loading its own model, as runner pods do. On a GPU
the jobs are eight of 220 s with `base`, and the GPU's utilisation and memory are sampled while each side runs; on a
CPU, one job per core with tiny.en.

`python -m bench.warmmodel MODEL WAV JOBS` is one side's process: it prints what it measured as JSON."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import decode_audio

from bench.speech import synthesise
from kubescribe.api.v1alpha1 import TranscriptionJobSpec
from kubescribe.runner.models import resolve_model
from kubescribe.runner.transcribe import load_model, transcribe

GPU_JOBS, GPU_SECONDS, GPU_MODEL = 8, 220.0, "base"
CPU_SECONDS, CPU_MODEL = 60.0, "tiny.en"
SAMPLE_SECONDS = 0.5
"""How often nvidia-smi is asked for the GPU's utilisation and memory."""


@dataclass(frozen=True)
class Plan:
    model: str
    jobs: int
    seconds: float
    gpu: bool

    @classmethod
    def for_this_machine(cls, cores: int) -> Plan:
        if ctranslate2.get_cuda_device_count() > 0:
            return cls(GPU_MODEL, GPU_JOBS, GPU_SECONDS, gpu=True)
        return cls(CPU_MODEL, max(1, cores), CPU_SECONDS, gpu=False)


def long_sample(destination: Path, seconds: float) -> None:
    """`seconds` of speech as 16 kHz mono WAV: the bench's spoken sample, repeated as often as it takes."""
    spoken = destination.with_suffix(".spoken.wav")
    synthesise(spoken)
    subprocess.run(
        ["sox", str(spoken), str(destination), "repeat", "9", "trim", "0", f"{seconds:.1f}"],
        check=True,
        capture_output=True,
    )


class GpuSampler:
    """nvidia-smi's utilisation (%) and memory used (MiB) of the first GPU, every SAMPLE_SECONDS while running."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def read() -> tuple[float, float] | None:
        if shutil.which("nvidia-smi") is None:
            return None
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
        first = subprocess.run(query, check=True, capture_output=True, text=True).stdout.splitlines()[0]
        utilisation, memory = (float(value) for value in first.split(","))
        return utilisation, memory

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            if (sample := self.read()) is not None:
                self.samples.append(sample)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def run_side(plan: Plan, wav: Path, processes: int, jobs_each: int) -> dict[str, Any]:
    """`processes` processes started at once, each running `jobs_each` jobs on its one model; what each reported,
    the wall time from the first start to the last exit, and the GPU's samples meanwhile."""
    idle = GpuSampler.read() if plan.gpu else None
    command = [sys.executable, "-m", "bench.warmmodel", plan.model, str(wav), str(jobs_each)]
    with GpuSampler() as sampler:
        started = time.monotonic()
        children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
        outputs = [child.communicate()[0] for child in children]
        wall = time.monotonic() - started
    if any(child.returncode for child in children):
        raise RuntimeError(f"a process of the side exited with {[child.returncode for child in children]}")
    reports = [json.loads(output) for output in outputs]
    side: dict[str, Any] = {
        "processes": processes,
        "wall_seconds": round(wall, 2),
        "load_seconds": [report["load_seconds"] for report in reports],
        "transcribe_seconds": [report["transcribe_seconds"] for report in reports],
        "max_rss_mib": [report["max_rss_mib"] for report in reports],
        "texts": sorted({text for report in reports for text in report["texts"]}),
    }
    if idle is not None and sampler.samples:
        utilisation = [sample[0] for sample in sampler.samples]
        side["gpu_utilisation_mean_percent"] = round(statistics.mean(utilisation), 1)
        side["gpu_utilisation_max_percent"] = max(utilisation)
        side["gpu_memory_peak_mib_per_process"] = round((max(s[1] for s in sampler.samples) - idle[1]) / processes)
    return side


def measure(work: Path, plan: Plan) -> dict[str, Any]:
    wav = work / "warm-model.wav"
    long_sample(wav, plan.seconds)
    audio = plan.jobs * plan.seconds
    per_job = run_side(plan, wav, processes=plan.jobs, jobs_each=1)
    warm = run_side(plan, wav, processes=1, jobs_each=plan.jobs)
    per_job_rate = audio / per_job["wall_seconds"]
    warm_rate = audio / warm["transcribe_seconds"][0]
    return {
        "model": plan.model,
        "device": "cuda (float16)" if plan.gpu else "cpu (int8)",
        "jobs": plan.jobs,
        "audio_seconds_per_job": plan.seconds,
        "per_job": per_job,
        "warm": warm,
        "per_job_audio_seconds_per_second": round(per_job_rate, 1),
        "warm_audio_seconds_per_second": round(warm_rate, 1),
        "warm_with_start_audio_seconds_per_second": round(audio / warm["wall_seconds"], 1),
        "ratio_warm_to_per_job": round(warm_rate / per_job_rate, 2),
        "same_transcripts": per_job["texts"] == warm["texts"],
    }


def _one_process(model_name: str, wav: Path, jobs: int) -> dict[str, Any]:
    """Loads the model once for `jobs` threads and runs them at once, each a job of the whole file."""

    def no_store() -> Any:
        raise RuntimeError("the bench's models come from packages")

    with tempfile.TemporaryDirectory() as cache:
        started = time.monotonic()
        whisper = load_model(resolve_model(model_name, Path(cache), no_store), download_root=cache, num_workers=jobs)
        loaded = time.monotonic()
        audio = np.asarray(decode_audio(str(wav)), dtype=np.float32)
        spec = TranscriptionJobSpec.model_validate(
            {"source": {"url": "https://example.org/a.wav"}, "model": model_name}
        )

        def job(_: int) -> str:
            transcript = transcribe(whisper, audio, spec)
            return " ".join(segment.text.strip() for segment in transcript.segments)

        begun = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as threads:
            texts = list(threads.map(job, range(jobs)))
        finished = time.monotonic()
    return {
        "load_seconds": round(loaded - started, 2),
        "transcribe_seconds": round(finished - begun, 2),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "texts": sorted({hashlib.sha256(text.encode()).hexdigest()[:16] for text in texts}),
    }


if __name__ == "__main__":
    print(json.dumps(_one_process(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))))
