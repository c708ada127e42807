"""Agent audio to a Twilio Media Stream: μ-law 8 kHz ``media`` messages, paced, with ``mark``s that tell us what
the caller actually heard.

Twilio plays everything it has been sent unless told to ``clear`` it, so :class:`TwilioOutput` never runs far
ahead: :meth:`TwilioOutput.write` queues audio locally and a pacer task sends 20 ms frames only while less than
``lead`` seconds are buffered at Twilio. A barge-in drops the local queue and ``clear``s at most ``lead`` seconds
at Twilio, so the caller stops hearing the agent within a network round trip.

Timeline bookkeeping (see :mod:`voice.reply.output`): positions are 8 kHz sample counts. After each chunk, and every
``mark_every`` seconds within one, a ``mark`` named ``"<epoch>:<position>"`` follows the media. Twilio echoes a mark
when playback reaches it — or, after a ``clear``, immediately for every mark still pending, which does *not* mean
played (reference §1.7). So a ``clear`` starts a new epoch first, and echoes of older epochs are ignored.
:meth:`TwilioOutput.played` is the last echoed position plus real time elapsed since, capped by an estimate of
what Twilio can have played of what was sent.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

from voice.audio import AudioChunk, RateAdapter, g711
from voice.reply import AudioOutput

log = logging.getLogger("voice.twilio")

RATE = 8000
FRAME_BYTES = 160  # 20 ms of μ-law at 8 kHz
MAX_BACKLOG = 120.0  # seconds of accepted audio not yet sent before write() waits
RECENT_FRAMES = 100  # sent frames remembered (2 s, far more than the lead) to re-send after a pause


class MediaSink(Protocol):
    """Where the output's messages go (the peer's ordered writer)."""

    @property
    def closed(self) -> bool:
        """Whether nothing more can be sent."""

    def send_media(self, mulaw: bytes) -> None:
        """Agent audio (μ-law 8 kHz, one 20 ms frame)."""

    def send_mark(self, name: str) -> None:
        """A mark to be echoed once the audio before it has played."""

    def send_clear(self) -> None:
        """Drop the audio buffered at Twilio."""


class TwilioOutput(AudioOutput):
    """One call's outbound audio. ``lead``: seconds kept queued at Twilio; ``mark_every``: mark spacing."""

    sample_rate = RATE
    passthrough = ("mulaw", RATE)

    def __init__(
        self,
        sink: MediaSink,
        *,
        lead: float = 0.16,
        mark_every: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.lead = lead
        self.mark_samples = max(FRAME_BYTES, int(mark_every * RATE))
        self.clock = clock
        self._written = 0  # samples accepted by write()
        self._queue: deque[tuple[bytearray, int]] = deque()  # accepted, not yet sent: (μ-law, end position)
        self._queued_bytes = 0
        self._sent = 0  # timeline position of the end of the audio sent to Twilio
        self._end_time = 0.0  # when Twilio would finish playing what was sent, if it played on receipt
        self._echo_pos = 0  # position of the last mark echoed as played
        self._echo_time = -math.inf  # when that echo arrived
        self._epoch = 0  # bumped by clear(): marks of older epochs were cleared, not played
        self._since_mark = 0
        self._paused = False
        self._recent: deque[tuple[int, bytes]] = deque()  # frames sent lately, (end position, μ-law): for pause
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._pacer: asyncio.Task[None] | None = None
        self._resampler = RateAdapter(RATE)
        # counters, for tests and debugging
        self.marks_sent = 0
        self.marks_played = 0
        self.marks_cleared = 0
        self.clears = 0

    # --- AudioOutput --------------------------------------------------------------------------------------------

    @property
    def written(self) -> int:
        """Samples accepted (8 kHz)."""
        return self._written

    async def write(self, chunk: AudioChunk) -> None:
        """Queue ``chunk``; the pacer sends it in 20 ms frames, keeping about ``lead`` seconds at Twilio.

        Returns at once (so the turn records where each sentence lies on the timeline as soon as it is queued);
        only a backlog of more than ``MAX_BACKLOG`` seconds makes it wait."""
        data = self._to_mulaw(chunk)
        if not data or self.sink.closed:
            return
        while self._queued_bytes > MAX_BACKLOG * RATE and not self.sink.closed:  # noqa: ASYNC110 - rare backpressure
            await asyncio.sleep(0.1)
        self._written += len(data)
        self._queue.append((bytearray(data), self._written))
        self._queued_bytes += len(data)
        self._empty.clear()
        self._wake.set()
        if self._pacer is None or self._pacer.done():
            self._pacer = asyncio.create_task(self._pace(), name="twilio-pacer")

    def played(self) -> int:
        """The last echoed mark plus real time since, capped by what Twilio can have played of what was sent."""
        now = self.clock()
        by_send_time = self._sent - max(0.0, self._end_time - now) * RATE
        by_echo = self._echo_pos + (now - self._echo_time) * RATE
        estimate = min(by_send_time, by_echo, self._sent)
        return round(max(self._echo_pos, estimate))

    async def clear(self) -> int:
        """Tell Twilio to drop its buffer, drop ours, and return the position heard up to."""
        heard = self.played()
        self._paused = False
        self._recent.clear()
        self._epoch += 1  # before the clear goes out: the echo flood that follows means "cleared"
        self.clears += 1
        self.sink.send_clear()
        self._drop_queue()
        now = self.clock()
        self._sent = self._written  # everything not yet played is skipped on the timeline
        self._end_time = now
        self._echo_pos, self._echo_time = self._written, now
        self._since_mark = 0
        self.progressed()
        return heard

    def pause(self) -> None:
        """Hold playback: Twilio drops what it buffered (``clear``) and that audio goes back to the front of our
        queue, from the position heard; the pacer waits for :meth:`resume`."""
        if self._paused:
            return
        heard = self.played()
        self._paused = True
        self._epoch += 1
        self.clears += 1
        self.sink.send_clear()
        unplayed = b"".join(frame[max(0, heard - (end - len(frame))) :] for end, frame in self._recent if end > heard)
        if unplayed:
            self._queue.appendleft((bytearray(unplayed), self._sent))
            self._queued_bytes += len(unplayed)
            self._empty.clear()
        now = self.clock()
        self._sent, self._end_time = heard, now
        self._echo_pos, self._echo_time = heard, now
        self._since_mark = 0
        self._recent.clear()

    def resume(self) -> None:
        """Play on from where :meth:`pause` held."""
        if self._paused:
            self._paused = False
            self._wake.set()

    async def drain(self) -> None:
        """Wait until everything written has been sent to Twilio (not played: see :meth:`played`)."""
        while self._queue and not self.sink.closed and self._pacer is not None and not self._pacer.done():
            await self._empty.wait()

    def close(self) -> None:
        """The stream is gone: stop sending."""
        self._drop_queue()
        if self._pacer is not None and not self._pacer.done():
            self._pacer.cancel()

    # --- the pacer ----------------------------------------------------------------------------------------------

    async def _pace(self) -> None:
        """Send queued audio in 20 ms frames whenever less than ``lead`` seconds are buffered at Twilio."""
        while not self.sink.closed:
            if not self._queue or self._paused:
                if not self._queue:
                    self._empty.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            buffered = self._end_time - self.clock()
            if buffered >= self.lead:
                await asyncio.sleep(max(0.002, buffered - self.lead + FRAME_BYTES / RATE))
                continue
            while self._queue and self._end_time - self.clock() < self.lead:
                self._send_frame()
        self._drop_queue()

    def _send_frame(self) -> None:
        data, end = self._queue[0]
        frame = bytes(data[:FRAME_BYTES])
        del data[:FRAME_BYTES]
        self._queued_bytes -= len(frame)
        self.sink.send_media(frame)
        self._end_time = max(self._end_time, self.clock()) + len(frame) / RATE
        self._sent = end - len(data)
        self._recent.append((self._sent, frame))
        if len(self._recent) > RECENT_FRAMES:
            self._recent.popleft()
        self._since_mark += len(frame)
        if not data:
            self._queue.popleft()
        if not data or self._since_mark >= self.mark_samples:
            self._send_mark()

    def _drop_queue(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0
        self._empty.set()

    # --- from Twilio --------------------------------------------------------------------------------------------

    def on_mark(self, name: str) -> None:
        """A ``mark`` echo: audio up to its position was played, unless it predates the last clear."""
        epoch, sep, position = name.partition(":")
        if not sep or not epoch.isdigit() or not position.isdigit():
            log.debug("ignoring a mark echo that is not ours: %.40r", name)
            return
        if int(epoch) != self._epoch:
            self.marks_cleared += 1
            return
        pos = min(int(position), self._sent)
        self.marks_played += 1
        if pos > self._echo_pos:
            self._echo_pos, self._echo_time = pos, self.clock()
            self.progressed()

    def queued_seconds(self) -> float:
        """Estimated seconds of audio buffered at Twilio."""
        return max(0.0, self._end_time - self.clock())

    # --- helpers ------------------------------------------------------------------------------------------------

    def _send_mark(self) -> None:
        self._since_mark = 0
        self.marks_sent += 1
        self.sink.send_mark(f"{self._epoch}:{self._sent}")

    def _to_mulaw(self, chunk: AudioChunk) -> bytes:
        if chunk.encoding == "mulaw":
            if chunk.sample_rate == RATE:
                return chunk.data
            pcm, rate = g711.decode(chunk.data), chunk.sample_rate
        elif chunk.encoding == "pcm16":
            pcm, rate = chunk.data[: len(chunk.data) & ~1], chunk.sample_rate
        else:
            log.warning("dropping audio in unsupported encoding %r", chunk.encoding)
            return b""
        pcm = self._resampler.process(pcm, rate)  # the reply resamples already; this is for direct callers
        return g711.encode_array(np.frombuffer(pcm, dtype="<i2")).tobytes()
