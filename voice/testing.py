"""Deterministic fake providers, for testing agents without models or network.

:class:`FakeTranscriber` is driven by the audio itself: a frame that starts with the marker samples carries a
command (speech start, interim, final) and its text, so a test client controls recognition over a real socket::

    await ws.send(fake_speech_frame("final", "what time is it"))

A marker frame with no command (what ``shared/bench/load_client.py`` sends) is a final with the default text.
:class:`FakeTTS` turns text into a tone whose length is proportional to the text, at any sample rate.
"""

from __future__ import annotations

import asyncio
import functools
import struct
import time

import numpy as np

from .audio import AudioChunk
from .providers.base import (
    EagerFinal,
    Final,
    Interim,
    SpeechStarted,
    SpeechStopped,
    Transcriber,
    TranscriberOptions,
    TranscriberSession,
    TTSProvider,
    TurnResumed,
)

MARKER = struct.pack("<4h", 12345, -12345, 12345, -12345)
_KINDS = {b"S": "start", b"I": "interim", b"F": "final", b"E": "eager", b"R": "resumed", b"T": "stopped"}
_CODES = {v: k for k, v in _KINDS.items()}


def fake_speech_frame(kind: str, text: str = "", samples: int = 320) -> bytes:
    """A PCM frame that :class:`FakeTranscriber` reads as ``kind`` with ``text``: "start" (speech started),
    "stopped" (silence began), "interim", "final", "eager" (a speculative end of turn) or "resumed" (the user went
    on talking)."""
    body = MARKER + _CODES[kind] + struct.pack("<H", len(text.encode())) + text.encode()
    body += bytes(max(0, samples * 2 - len(body)))
    return body + (b"\0" if len(body) % 2 else b"")


class FakeSession(TranscriberSession):
    """A session that reads commands from marker frames."""
    def __init__(self, options: TranscriberOptions, default_text: str, emit_speech_start: bool) -> None:
        self.options = options
        self.default_text = default_text
        self.emit_speech_start = emit_speech_start
        self.fed_bytes = 0
        self.closed = False

    def feed(self, pcm: bytes) -> None:
        """Read the command of each marker frame in ``pcm`` (audio buffered while a session opened arrives joined,
        several frames in one chunk)."""
        self.fed_bytes += len(pcm)
        at = pcm.find(MARKER)
        while at >= 0:
            at = self._command(pcm, at)
            at = pcm.find(MARKER, at)

    def _command(self, pcm: bytes, at: int) -> int:
        """Act on the marker frame at ``at``; returns where its command ends."""
        kind = _KINDS.get(pcm[at + 8 : at + 9])
        if kind is None:  # a bare marker: the load client's end of turn
            self.options.on_event(Final(self.default_text, speech_ended_at=time.monotonic()))
            return at + 8
        (length,) = struct.unpack("<H", pcm[at + 9 : at + 11])
        text = pcm[at + 11 : at + 11 + length].decode()
        if kind == "start":
            if self.emit_speech_start:
                self.options.on_event(SpeechStarted())
        elif kind == "stopped":
            self.options.on_event(SpeechStopped())
        elif kind == "interim":
            self.options.on_event(Interim(text))
        elif kind == "eager":
            self.options.on_event(EagerFinal(text))
        elif kind == "resumed":
            self.options.on_event(TurnResumed())
        else:
            self.options.on_event(Final(text, speech_ended_at=time.monotonic()))
        return at + 11 + length

    async def close(self) -> None:
        """Mark the session closed."""
        self.closed = True


class FakeTranscriber(Transcriber):
    """Marker-driven STT. ``emits_speech_start=False`` makes the engine fall back to its own VAD for barge-in."""

    def __init__(self, default_text: str = "hello", emits_speech_start: bool = True, start_delay: float = 0.0) -> None:
        self.default_text = default_text
        self.emits_speech_start = emits_speech_start
        self.start_delay = start_delay
        self.sessions: list[FakeSession] = []

    async def create_session(self, options: TranscriberOptions) -> FakeSession:
        """A new fake session (after ``start_delay``)."""
        if self.start_delay:
            await asyncio.sleep(self.start_delay)
        session = FakeSession(options, self.default_text, self.emits_speech_start)
        self.sessions.append(session)
        return session


@functools.lru_cache(maxsize=64)
def _tone(samples: int, rate: int) -> bytes:
    """``samples`` of a 440 Hz tone at ``rate``: made once per length, as a real fake's audio would be (benchmarks
    measure the library, not numpy synthesizing the same tone again)."""
    t = np.arange(samples) / rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


class FakeTTS(TTSProvider):
    """A 440 Hz tone, ``seconds_per_char`` long per character, at ``sample_rate``. ``delay`` simulates latency;
    ``fail_on`` makes synthesis of text containing it raise."""

    def __init__(
        self, sample_rate: int = 16_000, seconds_per_char: float = 0.01, delay: float = 0.0, fail_on: str | None = None
    ) -> None:
        self.sample_rate = sample_rate
        self.seconds_per_char = seconds_per_char
        self.delay = delay
        self.fail_on = fail_on
        self.spoken: list[str] = []

    def audio_for(self, text: str, sample_rate: int | None = None) -> bytes:
        """The tone for ``text`` at ``sample_rate``."""
        rate = sample_rate or self.sample_rate
        return _tone(max(1, int(len(text) * self.seconds_per_char * rate)), rate)

    async def synthesize(self, text, cancel=None, *, encoding="pcm16", sample_rate=None) -> AudioChunk:
        """A tone as long as the text (after ``delay``); raises on ``fail_on``."""
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_on and self.fail_on in text:
            raise RuntimeError("fake TTS failure")
        self.spoken.append(text)
        return AudioChunk(self.audio_for(text, sample_rate), sample_rate or self.sample_rate)
