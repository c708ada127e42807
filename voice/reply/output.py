"""The audio output contract every transport implements, and a clock for transports that cannot hear playback.

Positions are sample counts at the output's rate on one timeline per call: ``written`` counts every sample handed to
the output, ``played()`` the point the listener has heard up to. Audio dropped by :meth:`AudioOutput.clear` is never
heard, so the timeline jumps over it. A reply awaits :meth:`AudioOutput.wait_for_playout` instead of polling: outputs
that learn what was heard from the wire (client acks, Twilio marks, a WebRTC track) call :meth:`AudioOutput.progressed`.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from ..audio import AudioChunk


class AudioOutput(ABC):
    """Where one call's agent audio goes, and what of it the listener has heard."""

    #: pcm16 audio is written at this rate
    sample_rate: int = 16_000
    #: a format the transport can take as is, e.g. ("mulaw", 8000) for a phone line; TTS that can produce it skips
    #: conversion. ``None``: pcm16 at ``sample_rate`` only.
    passthrough: tuple[str, int] | None = None
    _progress: asyncio.Event | None = None

    @property
    @abstractmethod
    def written(self) -> int:
        """Samples written since the call started (including any later cleared)."""

    @abstractmethod
    async def write(self, chunk: AudioChunk) -> None:
        """Queue audio for playback, in order. May wait, to pace a transport that must not run far ahead."""

    @abstractmethod
    def played(self) -> int:
        """Timeline position the listener has heard up to (measured where the transport can, else estimated)."""

    @abstractmethod
    async def clear(self) -> int:
        """Stop playback at once and drop queued audio (barge-in). Returns the final heard position."""

    def is_playing(self) -> bool:
        """Whether the listener is still hearing agent audio."""
        return self.played() < self.written

    async def drain(self) -> None:  # noqa: B027 - optional
        """Wait until everything written has been handed to the wire."""

    def begin_stream(self) -> None:  # noqa: B027 - optional
        """A new stream of agent audio starts (``audio_config`` went out: a client's sample count restarts)."""

    def pause(self) -> None:  # noqa: B027 - optional: audio that cannot be held keeps playing until a decision
        """Hold playback where it is (the user may be interrupting); the heard position stops advancing and audio
        written meanwhile waits. :meth:`resume` plays on from the same sample, :meth:`clear` drops it all."""

    def resume(self) -> None:  # noqa: B027 - optional
        """Play on after :meth:`pause`."""

    def progressed(self) -> None:
        """What was heard changed by a report from the wire, or nobody listens any more: wake playout waiters."""
        if self._progress is not None:
            self._progress.set()

    async def wait_for_playout(self) -> None:
        """Return once the listener has heard everything written (or it was cleared)."""
        if self._progress is None:
            self._progress = asyncio.Event()
        loop = asyncio.get_running_loop()
        while self.is_playing():
            self._progress.clear()
            remaining = (self.written - self.played()) / self.sample_rate
            # woken by a report, or by a timer when the estimate says it has all been heard
            timer = loop.call_later(max(remaining, 0.005), self._progress.set)
            try:
                await self._progress.wait()
            finally:
                timer.cancel()


class PlaybackClock:
    """Estimates what a real-time player has played of the audio sent to it: each chunk starts when it arrives
    or when the previous one ends, whichever is later. For transports with no playback reports."""

    def __init__(self, sample_rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.sample_rate = sample_rate
        self.clock = clock
        self.written = 0
        self._end_time = 0.0  # when the last written sample finishes playing
        self._cleared_at = 0  # heard position at the last clear
        self._gap_end = 0  # the timeline position where audio after the last clear starts
        self._paused_at: int | None = None  # heard position while paused

    def on_write(self, samples: int) -> None:
        """``samples`` more were sent to the player."""
        now = self.clock()
        if self._paused_at is None:
            self._end_time = max(self._end_time, now) + samples / self.sample_rate
        self.written += samples

    def played(self) -> int:
        """The estimated heard position."""
        if self._paused_at is not None:
            return self._paused_at
        remaining = max(0.0, self._end_time - self.clock()) * self.sample_rate
        raw = self.written - round(remaining)
        return self._cleared_at if raw <= self._gap_end else raw

    def clear(self, heard: int | None = None) -> int:
        """Drop what is queued; ``heard`` overrides the estimate when the transport knows better."""
        position = self.played() if heard is None else max(0, min(heard, self.written))
        self._cleared_at = position
        self._gap_end = self.written
        self._end_time = self.clock()
        self._paused_at = None
        return position

    def pause(self, heard: int | None = None) -> None:
        """The player holds its audio; ``heard`` overrides the estimate of where it stopped."""
        if self._paused_at is None:
            self._paused_at = self.played() if heard is None else max(0, min(heard, self.written))

    def resume(self) -> None:
        """The player plays on from where it held."""
        if self._paused_at is not None:
            remaining = self.written - self._paused_at
            self._paused_at = None
            self._end_time = self.clock() + remaining / self.sample_rate
