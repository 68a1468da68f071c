"""One run from spec to transcripts: fetch, check, transcribe, upload, report."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from faster_whisper import WhisperModel

from kubescribe import egress
from kubescribe.api.v1alpha1 import Result, transcript_key
from kubescribe.contract import EXIT_BAD_INPUT
from kubescribe.runner.config import Config
from kubescribe.runner.diarize import diarize, speaker_count
from kubescribe.runner.errors import Abandoned, RunnerFailure
from kubescribe.runner.formats import RENDERERS
from kubescribe.runner.models import resolve_model
from kubescribe.runner.report import Patch, ProgressReporter
from kubescribe.runner.source import SAMPLE_RATE, fetch, load_audio, s3_client
from kubescribe.runner.transcribe import load_model, transcribe
from kubescribe.runner.transfer import Cap, upload
from kubescribe.runner.voice import load_encoder

log = logging.getLogger(__name__)


def output_location(config: Config) -> tuple[str, str]:
    """The bucket and key prefix of the transcripts."""
    spec = config.spec
    if spec.outputs.s3:
        return spec.outputs.s3.bucket, spec.outputs.s3.prefix
    if spec.source.s3:
        return spec.source.s3.bucket, f"transcripts/{config.job_name or spec.source.stem}/"
    raise RunnerFailure(EXIT_BAD_INPUT, "InvalidSpec", "outputs.s3 must be set when the source is a url")


def run(
    config: Config,
    workdir: Path,
    patch: Patch | None,
    whisper: WhisperModel | None = None,
    still_mine: Callable[[], bool] = lambda: True,
) -> Result:
    """Transcribe as `config` says, with the `whisper` model already loaded or else the spec's. `still_mine` is asked
    before each upload: a pool worker's attempt that is no longer its own raises Abandoned there."""
    try:
        return _run(config, workdir, patch, whisper, still_mine)
    except egress.Refused as refused:
        # The job's own store: a refused source URL has already failed with its own message.
        raise RunnerFailure(EXIT_BAD_INPUT, "SourceForbidden", f"source.s3.endpoint {refused}") from None


def _run(
    config: Config,
    workdir: Path,
    patch: Patch | None,
    whisper: WhisperModel | None,
    still_mine: Callable[[], bool],
) -> Result:
    spec = config.spec
    bucket, prefix = output_location(config)
    # Transcripts go to the source's store when they go to its bucket, else to the default store.
    output_s3 = config.s3.with_endpoint(spec.source.s3.endpoint if spec.source.s3 and not spec.outputs.s3 else None)

    def model() -> WhisperModel:
        if whisper is not None:
            return whisper
        location = resolve_model(
            spec.model,
            config.model_cache,
            lambda: s3_client(config.s3, config.egress),
            config.grants,
            node_cache=config.node_model_cache,
        )
        return load_model(location, download_root=str(config.model_cache / "huggingface"))

    # The models load while the audio is fetched and decoded.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="model") as pool:
        loading = pool.submit(model)
        encoder = pool.submit(load_encoder) if spec.options.diarize else None
        audio_path = workdir / "source"
        limits = config.limits
        cap = Cap(limits.max_source_bytes, limits.download_timeout_seconds)
        fetch(spec.source, config.s3, config.grants, config.egress, audio_path, cap=cap)
        audio = load_audio(audio_path, limits.max_duration_seconds)
        audio_path.unlink()
        duration = len(audio) / SAMPLE_RATE
        log.info("audio decoded", extra={"durationSeconds": round(duration, 3)})
        whisper = loading.result()
        voices = encoder.result() if encoder else None
    reporter = ProgressReporter(patch, duration)
    reporter.update(0.0)
    started = time.monotonic()
    transcript = transcribe(whisper, audio, spec, reporter.update)
    real_time_factor = (time.monotonic() - started) / duration
    log.info("transcribed", extra={"segments": len(transcript.segments), "realTimeFactor": round(real_time_factor, 4)})
    speakers = None
    if voices is not None:
        started = time.monotonic()
        options = spec.options
        transcript = diarize(transcript, audio, voices, options.min_speakers, options.max_speakers)
        if not options.word_timestamps:
            transcript = transcript.without_words()
        speakers = speaker_count(transcript)
        log.info("diarized", extra={"speakers": speakers, "seconds": round(time.monotonic() - started, 3)})

    outputs: dict[str, str] = {}
    for format_ in spec.outputs.formats:
        render, content_type = RENDERERS[format_]
        data = render(transcript).encode()
        if not still_mine():
            raise Abandoned
        if config.grants is not None:
            grant = config.grants.outputs[format_]
            upload(grant.url, data, content_type, grant.uri)
            outputs[format_] = grant.uri
        else:
            key = transcript_key(prefix, spec.source, format_)
            s3_client(output_s3, config.egress).put_object(
                bucket, key, io.BytesIO(data), len(data), content_type=content_type
            )
            outputs[format_] = f"s3://{bucket}/{key}"
    log.info("transcripts written", extra={"outputs": outputs})

    result = Result(
        language=transcript.language,
        language_probability=transcript.language_probability,
        duration_seconds=round(duration, 3),
        outputs=outputs,
        real_time_factor=round(real_time_factor, 4),
        speakers=speakers,
    )
    reporter.finish(result)
    return result
