"""Short non-speech bursts (100-200 ms) a caller's microphone picks up: band-passed noise, a cough-like burst, a
door knock and a click train. Deterministic for a given seed; 16 kHz int16, RMS over the burst at ``dbfs``."""

from __future__ import annotations

import numpy as np

RATE = 16_000
KINDS = ("filtered", "cough", "knock", "clicks")


def _band(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Brick-wall band-pass in the frequency domain (fine for a synthetic burst)."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1 / RATE)
    spec[(freqs < low) | (freqs > high)] = 0
    return np.fft.irfft(spec, x.size)


def _envelope(n: int, attack: int, decay_s: float) -> np.ndarray:
    t = np.arange(n) / RATE
    env = np.exp(-np.maximum(0, t - attack / RATE) / decay_s)
    env[:attack] = np.linspace(0, 1, attack)
    return env


def _filtered(n: int, rng: np.random.Generator) -> np.ndarray:
    x = _band(rng.standard_normal(n), 400, 4000)
    ramp = RATE // 100
    x[:ramp] *= np.linspace(0, 1, ramp)
    x[-ramp:] *= np.linspace(1, 0, ramp)
    return x


def _cough(n: int, rng: np.random.Generator) -> np.ndarray:
    """A glottal burst: fast attack, ~50 ms decay, energy at 300-2500 Hz with a voiced-ish buzz at ~180 Hz."""
    t = np.arange(n) / RATE
    noise = _band(rng.standard_normal(n), 300, 2500)
    buzz = np.sign(np.sin(2 * np.pi * 180 * t)) * 0.3
    return (noise + buzz) * _envelope(n, RATE // 200, 0.05)


def _knock(n: int, rng: np.random.Generator) -> np.ndarray:
    """Three knuckle raps 60 ms apart: each a damped 150-250 Hz resonance plus a 2 ms transient."""
    x = np.zeros(n)
    for k, start in enumerate(range(0, n - RATE // 50, int(0.06 * RATE))):
        m = n - start
        t = np.arange(m) / RATE
        rap = np.sin(2 * np.pi * (150 + 40 * k) * t) * np.exp(-t / 0.015)
        rap[: RATE // 500] += rng.standard_normal(RATE // 500)
        x[start:] += rap
    return x


def _clicks(n: int, rng: np.random.Generator) -> np.ndarray:
    """A 3 ms click every 25 ms (a pen, a keyboard, a cable)."""
    x = np.zeros(n)
    for start in range(0, n - 48, int(0.025 * RATE)):
        x[start : start + 48] = rng.standard_normal(48) * np.linspace(1, 0, 48)
    return x


_MAKERS = {"filtered": _filtered, "cough": _cough, "knock": _knock, "clicks": _clicks}


def burst(kind: str, ms: int, dbfs: float, seed: int) -> bytes:
    """A ``kind`` burst (one of :data:`KINDS`) of ``ms`` milliseconds, RMS ``dbfs`` over its length."""
    if not 100 <= ms <= 200:
        raise ValueError("bursts are 100-200 ms")
    n = RATE * ms // 1000
    x = _MAKERS[kind](n, np.random.default_rng(seed))
    x *= 32768 * 10 ** (dbfs / 20) / np.sqrt(np.mean(x**2))
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()
