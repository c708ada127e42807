"""Audio utilities shared by every layer: :class:`AudioChunk`, resampling, voice activity detection, G.711 μ-law and
low-latency 8 → 16 kHz up-sampling. Inside the engine audio is 16 kHz mono int16 little-endian PCM."""

from .pcm import ENGINE_RATE, SAMPLE_WIDTH, AudioChunk, RateAdapter, StreamResampler, resample, to_mono_int16

__all__ = [
    "ENGINE_RATE",
    "SAMPLE_WIDTH",
    "AudioChunk",
    "RateAdapter",
    "StreamResampler",
    "resample",
    "to_mono_int16",
]
