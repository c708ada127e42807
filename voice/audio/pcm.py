"""Audio values and conversions: :class:`AudioChunk`, streaming resampling (soxr), mixing down to mono. Inside the
engine audio is 16 kHz mono int16 little-endian PCM."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

ENGINE_RATE = 16_000
SAMPLE_WIDTH = 2  # bytes per int16 sample


@dataclass(frozen=True)
class AudioChunk:
    """A piece of audio: ``data`` in ``encoding`` ("pcm16": int16 LE mono, or "mulaw": G.711) at ``sample_rate``."""

    data: bytes
    sample_rate: int
    encoding: str = "pcm16"

    @property
    def samples(self) -> int:
        """Number of samples."""
        return len(self.data) // SAMPLE_WIDTH if self.encoding == "pcm16" else len(self.data)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples / self.sample_rate


class StreamResampler:
    """Streaming, anti-aliased int16 mono resampler (soxr) that keeps its filter state between chunks."""

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream: soxr.ResampleStream | None = None
        if in_rate != out_rate:
            self._stream = soxr.ResampleStream(in_rate, out_rate, 1, "int16", quality)

    def process(self, pcm: bytes, last: bool = False) -> bytes:
        """Resample a chunk; pass ``last=True`` on the final chunk to flush the filter's tail."""
        if self._stream is None:
            return pcm
        samples = np.frombuffer(pcm, dtype="<i2")
        return self._stream.resample_chunk(samples, last=last).astype("<i2", copy=False).tobytes()


class RateAdapter:
    """Streaming resampling to a fixed ``out_rate`` from input whose rate may change between chunks (a TTS voice, a
    decoded track): a new filter starts when the input rate changes; same rate in and out costs nothing."""

    def __init__(self, out_rate: int) -> None:
        self.out_rate = out_rate
        self._stream: StreamResampler | None = None

    def process(self, pcm: bytes, in_rate: int) -> bytes:
        """Resample one chunk of int16 mono at ``in_rate``."""
        if in_rate == self.out_rate:
            return pcm
        if self._stream is None or self._stream.in_rate != in_rate:
            self._stream = StreamResampler(in_rate, self.out_rate)
        return self._stream.process(pcm)

    def flush(self) -> bytes:
        """The filter's tail at the end of a stream (then the adapter starts afresh)."""
        stream, self._stream = self._stream, None
        return stream.process(b"", last=True) if stream is not None else b""


def resample(pcm: bytes, in_rate: int, out_rate: int) -> bytes:
    """Resample a whole int16 mono buffer in one go."""
    if in_rate == out_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2")
    return soxr.resample(samples, in_rate, out_rate, quality="HQ").astype("<i2", copy=False).tobytes()


def to_mono_int16(samples: np.ndarray) -> np.ndarray:
    """Mix any (frames, channels) int or float array down to mono int16."""
    floating = samples.dtype.kind == "f"
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if floating:
        samples = np.clip(samples, -1.0, 1.0) * 32767.0
    return np.clip(np.round(samples), -32768, 32767).astype("<i2")

