"""The audio output contract, and the bookkeeping that says which words of a reply the user actually heard.

Every transport implements :class:`AudioOutput`. Positions are sample counts at the output's rate on one timeline
per call: ``written`` counts every sample handed to the output, ``played()`` the point the listener has heard up to.
Audio dropped by :meth:`AudioOutput.clear` is never heard, so the timeline jumps over it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from .audio import AudioChunk


class AudioOutput(ABC):
    """Where one call's agent audio goes, and what of it the listener has heard."""

    #: pcm16 audio is written at this rate
    sample_rate: int = 16_000
    #: a format the transport can take as is, e.g. ("mulaw", 8000) for a phone line; TTS that can produce it skips
    #: conversion. ``None``: pcm16 at ``sample_rate`` only.
    passthrough: tuple[str, int] | None = None

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

    def on_write(self, samples: int) -> None:
        now = self.clock()
        self._end_time = max(self._end_time, now) + samples / self.sample_rate
        self.written += samples

    def played(self) -> int:
        remaining = max(0.0, self._end_time - self.clock()) * self.sample_rate
        raw = self.written - int(round(remaining))
        return self._cleared_at if raw <= self._gap_end else raw

    def clear(self, heard: int | None = None) -> int:
        """Drop what is queued; ``heard`` overrides the estimate when the transport knows better."""
        position = self.played() if heard is None else max(0, min(heard, self.written))
        self._cleared_at = position
        self._gap_end = self.written
        self._end_time = self.clock()
        return position


@dataclass
class Segment:
    """One sentence of a reply and where its audio lies on the output timeline. While its audio is still being
    written (``complete`` False), ``expected`` estimates its full length."""

    text: str
    start: int
    end: int
    expected: int = 0
    complete: bool = True

    @property
    def length(self) -> int:
        return self.end - self.start if self.complete else max(self.end - self.start, self.expected)


#: speaking rate used to guess the length of a sentence whose audio is not all written yet
SECONDS_PER_CHARACTER = 0.06


class HeardText:
    """Maps a heard position back to the text of a reply that the user actually heard."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []

    def add(self, text: str, start: int, end: int) -> None:
        if end > start:
            self.segments.append(Segment(text, start, end))

    def begin(self, text: str, start: int, sample_rate: int) -> Segment:
        """A sentence whose audio starts at ``start``; extend ``end`` as audio is written, then mark it complete."""
        segment = Segment(text, start, start, int(len(text) * SECONDS_PER_CHARACTER * sample_rate), complete=False)
        self.segments.append(segment)
        return segment

    def heard(self, position: int) -> str:
        """Whole sentences heard, plus the words of a partly heard one in proportion to the audio played."""
        parts: list[str] = []
        for seg in self.segments:
            if seg.end <= seg.start:
                continue
            if seg.complete and position >= seg.end:
                parts.append(seg.text)
                continue
            if position > seg.start:
                words = seg.text.split()
                share = min(position, seg.end) - seg.start
                count = int(len(words) * share / seg.length)
                if count:
                    parts.append(" ".join(words[:count]))
            break
        return " ".join(parts)
