"""Objective audio quality of a codec path: align what came out with what went in, then SNR and log-spectral
distance (both at 16 kHz, the rate speech recognition hears). Intelligibility is Whisper's word error rate
(:func:`tests.speech.wer`); these two catch what WER forgives (noise, muffling, clicks, level).
"""

from __future__ import annotations

import numpy as np

RATE = 16_000


def _floats(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def align(reference: bytes, degraded: bytes, max_lag: int = RATE) -> tuple[np.ndarray, np.ndarray, int]:
    """``reference`` and the stretch of ``degraded`` that best matches it (cross-correlation over lags 0 to
    ``max_lag`` samples: ``degraded`` is the later one), as equal-length float arrays, and the lag found."""
    ref, deg = _floats(reference), _floats(degraded)
    n = 1 << int(np.ceil(np.log2(ref.size + deg.size)))
    corr = np.fft.irfft(np.fft.rfft(deg, n) * np.conj(np.fft.rfft(ref, n)), n)
    lag = int(np.argmax(corr[: max_lag + 1]))
    deg = deg[lag : lag + ref.size]
    return ref[: deg.size], deg, lag


def snr_db(reference: np.ndarray, degraded: np.ndarray) -> float:
    """Signal-to-noise ratio of aligned signals: reference energy over the energy of the difference."""
    noise = float(np.sum((reference - degraded) ** 2))
    return float(10 * np.log10(float(np.sum(reference**2)) / max(noise, 1e-9)))


def lsd_db(reference: np.ndarray, degraded: np.ndarray, frame: int = 512, floor_db: float = -60.0) -> float:
    """Log-spectral distance (dB) of aligned signals: the RMS over frequency of the difference between the two
    log power spectra, averaged over the 32 ms frames where the reference is louder than ``floor_db`` dBFS."""
    hop = frame // 2
    window = np.hanning(frame)
    count = (reference.size - frame) // hop + 1
    if count <= 0:
        raise ValueError("signals shorter than one frame")
    index = np.arange(frame)[None, :] + hop * np.arange(count)[:, None]
    ref = np.abs(np.fft.rfft(reference[index] * window, axis=1)) ** 2
    deg = np.abs(np.fft.rfft(degraded[index] * window, axis=1)) ** 2
    full_scale = (32768.0 * window.sum()) ** 2
    loud = 10 * np.log10(ref.sum(axis=1) / full_scale + 1e-12) > floor_db
    eps = full_scale * 1e-10  # -100 dB: silence in one spectrum must not count as infinite distance
    diff = 10 * np.log10((ref[loud] + eps) / (deg[loud] + eps))
    return float(np.mean(np.sqrt(np.mean(diff**2, axis=1))))


def align_chunks(chunks: list[bytes], degraded: bytes, slack: int = RATE) -> tuple[np.ndarray, np.ndarray]:
    """Find each reference chunk, in order, in ``degraded`` (a stream that may hold extra silence before and
    between them, e.g. where the sender paused); the matched stretches, concatenated, as equal-length arrays."""
    refs, degs = [], []
    cursor = 0
    for chunk in chunks:
        window = degraded[cursor * 2 : (cursor + len(chunk) // 2 + slack) * 2]
        ref, deg, lag = align(chunk, window, slack)
        refs.append(ref)
        degs.append(deg)
        cursor += lag + deg.size
    return np.concatenate(refs), np.concatenate(degs)


def level_db(reference: np.ndarray, degraded: np.ndarray) -> float:
    """How much louder (dB) ``degraded`` is than ``reference``."""
    return float(10 * np.log10(float(np.sum(degraded**2)) / max(float(np.sum(reference**2)), 1e-9)))
