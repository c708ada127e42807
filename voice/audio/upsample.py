"""Low-latency 8 kHz → 16 kHz upsampling for inbound phone audio.

Why not :class:`voice.audio.StreamResampler` (soxr)? libsoxr's streaming mode works in ~100 ms blocks: fed 20 ms
phone frames it returns nothing for four frames and then 100 ms at once, which adds up to 100 ms to every speech
onset the VAD/STT sees (barge-in latency) and makes the audio bursty. A 2× upsampler needs no such block: this is
a polyphase half-band windowed-sinc FIR (63 taps, Kaiser β=8, cut-off at 4 kHz) that keeps its last input samples
between chunks, so any chunking gives output identical to one pass, with a fixed delay of 31 samples (1.9 ms).
Flat (±0.012 dB) to 3.4 kHz, images below -57 dB there; 1 kHz comes out at ~79 dB SNR.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Upsampler2x"]

TAPS_PER_PHASE = 32
_BETA = 8.0


def _design() -> tuple[np.ndarray, np.ndarray]:
    n = 2 * TAPS_PER_PHASE - 1  # odd and symmetric: a half-band filter with an integer delay of n // 2 samples
    t = np.arange(n) - n // 2
    h = np.sinc(t / 2) * np.kaiser(n, _BETA)  # low-pass at half the output Nyquist (4 kHz at 16 kHz)
    h *= 2.0 / h.sum()  # gain 2: each phase then sums to ~1 (unity DC gain after zero-stuffing)
    h = np.append(h, 0.0)  # pad to two equal phases; the centre tap's phase just passes input samples through
    return h[0::2].copy(), h[1::2].copy()


_PHASE0, _PHASE1 = _design()


class Upsampler2x:
    """Streaming int16 mono upsampler by exactly 2 (8 kHz → 16 kHz); output is twice the input length."""

    def __init__(self) -> None:
        self._history = np.zeros(TAPS_PER_PHASE - 1, dtype=np.float64)

    def process(self, pcm: bytes) -> bytes:
        """Upsample a chunk of int16 LE samples (any length; an odd trailing byte is ignored)."""
        x = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2).astype(np.float64)
        if x.size == 0:
            return b""
        ext = np.concatenate((self._history, x))
        self._history = ext[-(TAPS_PER_PHASE - 1) :]
        out = np.empty(2 * x.size, dtype=np.float64)
        out[0::2] = np.convolve(ext, _PHASE0, mode="valid")
        out[1::2] = np.convolve(ext, _PHASE1, mode="valid")
        return np.clip(np.rint(out), -32768, 32767).astype("<i2").tobytes()
