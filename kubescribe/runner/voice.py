"""Speaker embeddings in numpy: Resemblyzer's pretrained voice encoder (GE2E: a 3-layer LSTM over 40 mel bands,
256-dimensional embeddings), read from its checkpoint without PyTorch.

The front end is the one the weights were trained with: 16 kHz audio raised to -30 dBFS when quieter, a power mel
spectrogram of 25 ms Hann windows every 10 ms (40 Slaney mel bands, 0 to 8 kHz), cut into partial utterances of 160
frames (1.6 s), 1.3 of them a second. Each partial's embedding is the last hidden state of the top LSTM layer through
a linear layer and a ReLU, L2-normalised; a clip's embedding is the mean of its partials', L2-normalised again.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from kubescribe.contract import EXIT_FAILED
from kubescribe.runner.checkpoint import CheckpointError, read_checkpoint
from kubescribe.runner.errors import RunnerFailure

Array = np.ndarray[Any, Any]
"""float32 unless said otherwise."""

SAMPLE_RATE = 16000
FFT_SIZE = 400
"""25 ms."""
HOP = 160
"""10 ms."""
MEL_BANDS = 40
PARTIAL_FRAMES = 160
PARTIAL_STEP = 77
"""Frames between partials: 1.3 partials a second."""
MIN_COVERAGE = 0.75
"""The last partial is kept when the clip fills this much of it (or when it is the only one)."""
TARGET_DBFS = -30.0
LAYERS = 3
BATCH = 256
"""Clips through the LSTM at once (most are one partial): bounds its memory to a few hundred MB."""

WEIGHTS_PACKAGE = "resemblyzer"
WEIGHTS_FILE = "pretrained.pt"


def weights_path() -> Path | None:
    """Resemblyzer's pretrained.pt where the package is installed, found without importing it (it imports
    PyTorch, which the runner does not carry)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / WEIGHTS_FILE
    return path if path.is_file() else None


def load_encoder() -> VoiceEncoder:
    path = weights_path()
    if path is None:
        raise RunnerFailure(
            EXIT_FAILED,
            "SpeakerEncoderMissing",
            f"diarization needs the speaker encoder's weights, {WEIGHTS_PACKAGE}/{WEIGHTS_FILE}, which this runner "
            f"image lacks (pip install --no-deps {WEIGHTS_PACKAGE})",
        )
    try:
        return VoiceEncoder.from_checkpoint(path.read_bytes())
    except (CheckpointError, KeyError, TypeError) as error:
        raise RunnerFailure(EXIT_FAILED, "SpeakerEncoderMissing", f"{path} is not a speaker encoder: {error}") from None


@dataclass(frozen=True)
class LstmLayer:
    input_weights: Array
    """(4 * hidden, inputs), the gates in PyTorch's order: input, forget, cell, output."""
    hidden_weights: Array
    bias: Array


@dataclass(frozen=True)
class VoiceEncoder:
    layers: tuple[LstmLayer, ...]
    projection: Array
    projection_bias: Array

    @classmethod
    def from_checkpoint(cls, data: bytes) -> VoiceEncoder:
        state = read_checkpoint(data)["model_state"]

        def weight(name: str) -> Array:
            return np.ascontiguousarray(state[name], dtype=np.float32)

        layers = tuple(
            LstmLayer(
                weight(f"lstm.weight_ih_l{n}"),
                weight(f"lstm.weight_hh_l{n}"),
                weight(f"lstm.bias_ih_l{n}") + weight(f"lstm.bias_hh_l{n}"),
            )
            for n in range(LAYERS)
        )
        return cls(layers, weight("linear.weight"), weight("linear.bias"))

    def embed_partials(self, mels: Array) -> Array:
        """The L2-normalised embeddings of partials of shape (count, frames, bands)."""
        # Each step's products are small: more BLAS threads cost more than they save (on a busy two-core machine,
        # two threads ran the LSTM four times slower than one).
        with threadpool_limits(limits=1, user_api="blas"):
            sequence = mels
            for layer in self.layers:
                sequence = _lstm(layer, sequence)
            raw = np.maximum(sequence[:, -1] @ self.projection.T + self.projection_bias, 0)
        return _normalised(raw)


def _lstm(layer: LstmLayer, inputs: Array) -> Array:
    """The hidden states of one LSTM layer over inputs of shape (batch, steps, features)."""
    batch, steps, _ = inputs.shape
    hidden_size = layer.hidden_weights.shape[1]
    projected = inputs @ layer.input_weights.T + layer.bias
    hidden = np.zeros((batch, hidden_size), dtype=np.float32)
    cell = np.zeros((batch, hidden_size), dtype=np.float32)
    outputs = np.empty((batch, steps, hidden_size), dtype=np.float32)
    for step in range(steps):
        gates = projected[:, step] + hidden @ layer.hidden_weights.T
        input_gate, forget_gate, candidate, output_gate = np.split(gates, 4, axis=1)
        cell = _sigmoid(forget_gate) * cell + _sigmoid(input_gate) * np.tanh(candidate)
        hidden = _sigmoid(output_gate) * np.tanh(cell)
        outputs[:, step] = hidden
    return outputs


def _sigmoid(x: Array) -> Array:
    return 0.5 * (np.tanh(0.5 * x) + 1)


def _normalised(vectors: Array) -> Array:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1)).astype(np.float32)


def mel_filterbank() -> Array:
    """Slaney-style mel filters, each normalised to unit area: shape (bands, FFT_SIZE // 2 + 1)."""
    frequencies = np.fft.rfftfreq(FFT_SIZE, 1 / SAMPLE_RATE)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), MEL_BANDS + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (frequencies - lower) / (centre - lower)
    falling = (upper - frequencies) / (upper - centre)
    filters: Array = np.maximum(0, np.minimum(rising, falling)) * (2 / (upper - lower))
    return filters.astype(np.float32)


_LINEAR_HZ_PER_MEL = 200 / 3
_LOG_START_HZ = 1000.0
_LOG_START_MEL = _LOG_START_HZ / _LINEAR_HZ_PER_MEL
_LOG_STEP = np.log(6.4) / 27


def _hz_to_mel(hz: Any) -> Any:
    hz = np.asarray(hz, dtype=np.float64)
    return np.where(
        hz < _LOG_START_HZ,
        hz / _LINEAR_HZ_PER_MEL,
        _LOG_START_MEL + np.log(np.maximum(hz, _LOG_START_HZ) / _LOG_START_HZ) / _LOG_STEP,
    )


def _mel_to_hz(mel: Any) -> Any:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(
        mel < _LOG_START_MEL,
        mel * _LINEAR_HZ_PER_MEL,
        _LOG_START_HZ * np.exp(_LOG_STEP * (mel - _LOG_START_MEL)),
    )


_FILTERBANK = mel_filterbank()
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FFT_SIZE) / FFT_SIZE)).astype(np.float32)


def mel_spectrogram(samples: Array) -> Array:
    """Power mel spectrogram of shape (frames, bands), frames centred every HOP samples (the signal zero-padded by
    half a window at each end)."""
    padded = np.pad(samples.astype(np.float32), FFT_SIZE // 2)
    count = 1 + (len(padded) - FFT_SIZE) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, FFT_SIZE)[::HOP][:count]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=1)) ** 2
    return (power @ _FILTERBANK.T).astype(np.float32)


def partial_starts(samples: int) -> list[int]:
    """The first frame of each partial of a clip of `samples` samples."""
    frames = -(-(samples + 1) // HOP)
    starts = list(range(0, max(1, frames - PARTIAL_FRAMES + PARTIAL_STEP + 1), PARTIAL_STEP))
    coverage = (samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts


def louder(samples: Array) -> Array:
    """The clip raised to TARGET_DBFS when it is quieter; louder clips are left as they are."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    if rms == 0:
        return samples
    change = TARGET_DBFS - 20 * np.log10(rms)
    return samples * np.float32(10 ** (change / 20)) if change > 0 else samples


def partials(samples: Array) -> Array:
    """A clip's partial spectrograms, shape (count, PARTIAL_FRAMES, MEL_BANDS), zero-padded at the end."""
    starts = partial_starts(len(samples))
    length = (starts[-1] + PARTIAL_FRAMES) * HOP
    clip = louder(samples)
    clip = np.pad(clip, (0, max(0, length - len(clip))))
    mel = mel_spectrogram(clip)
    return np.stack([mel[start : start + PARTIAL_FRAMES] for start in starts])


def embed_clips(encoder: VoiceEncoder, clips: Sequence[Array]) -> Array:
    """One L2-normalised embedding per clip, shape (clips, 256): the mean of its partials' embeddings. Clips go
    through BATCH at a time, so that the spectrograms of hours of audio are never held at once."""
    chunks = [_embed_chunk(encoder, clips[start : start + BATCH]) for start in range(0, len(clips), BATCH)]
    return np.concatenate(chunks) if chunks else np.zeros((0, len(encoder.projection_bias)), dtype=np.float32)


def _embed_chunk(encoder: VoiceEncoder, clips: Sequence[Array]) -> Array:
    pieces = [partials(clip) for clip in clips]
    embeddings = encoder.embed_partials(np.concatenate(pieces))
    bounds = np.cumsum([0, *(len(piece) for piece in pieces)])
    return _normalised(np.stack([embeddings[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)]))
