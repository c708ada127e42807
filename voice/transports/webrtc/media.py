"""Audio for the WebRTC transport: the agent's outgoing track, its :class:`~voice.reply.AudioOutput`, and the
conversion of incoming Opus frames to engine PCM. Needs ``aiortc`` (``pip install 'voice[webrtc]'``); imported
only when a peer connects.

Outgoing: :class:`WebRTCOutput` queues agent audio (48 kHz mono int16); :class:`AgentAudioTrack` is pulled by
aiortc's RTP sender and hands out one 20 ms frame per call of :meth:`AgentAudioTrack.recv`, paced by the clock,
silence when the queue is empty. Because the track itself takes the samples off the queue, ``played()`` is exact
(what went to the encoder), and ``clear()`` drops everything not yet emitted — no client acks are needed.

Incoming: :func:`frame_to_mono` turns any ``av.AudioFrame`` (packed or planar, s16/s32/flt/dbl, any channel count)
into mono int16; :func:`read_track` resamples it to 16 kHz with a streaming soxr filter and feeds the call.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from ...audio import ENGINE_RATE, AudioChunk, RateAdapter
from ...reply import AudioOutput

log = logging.getLogger("voice.webrtc")

RATE = 48_000  # Opus' clock rate: the outgoing track runs at it, so the encoder never resamples
FRAME_SAMPLES = 960  # 20 ms
FRAME_BYTES = FRAME_SAMPLES * 2
TIME_BASE = fractions.Fraction(1, RATE)
MAX_LAG = 0.2  # if the loop stalled longer than this, re-anchor the pacing clock instead of bursting to catch up
_SILENCE = bytes(FRAME_BYTES)


class WebRTCOutput(AudioOutput):
    """One call's agent audio, queued for :class:`AgentAudioTrack`.

    Timeline positions are 48 kHz sample counts. ``played()`` is the position the track has consumed up to:
    audio it emitted, plus audio dropped by :meth:`clear` (jumped over). When no track pulls audio (the client
    offered no audio it would receive, or the connection is gone) the output is *detached*: writes count as
    played at once, so a turn never waits for a listener that does not exist.
    """

    sample_rate = RATE

    def __init__(self) -> None:
        self._buffer = bytearray()  # queued, not yet emitted (48 kHz mono int16)
        self._written = 0
        self._consumed = 0  # timeline position of the first queued sample
        self._attached = False
        self._paused = False
        self._resampler = RateAdapter(RATE)
        self.emitted_frames = 0  # counters, for tests and benchmarks
        self.audio_frames = 0  # frames that carried agent audio

    @property
    def attached(self) -> bool:
        """Whether a track pulls this output's audio."""
        return self._attached

    def attach(self) -> None:
        """A track will pull the audio."""
        self._attached = True

    def detach(self) -> None:
        """Nobody listens any more: drop the queue; later writes play instantly."""
        self._attached = False
        self._buffer.clear()
        self._consumed = self._written
        self.progressed()

    def queued_samples(self) -> int:
        """Samples waiting for the track."""
        return len(self._buffer) // 2

    @property
    def written(self) -> int:
        """Samples written (48 kHz)."""
        return self._written

    async def write(self, chunk: AudioChunk) -> None:
        """Queue audio for the track (resampled to 48 kHz if needed)."""
        if chunk.encoding != "pcm16":
            log.warning("dropping audio in unsupported encoding %r", chunk.encoding)
            return
        # the reply resamples to sample_rate already; this is for direct callers
        data = self._resampler.process(chunk.data[: len(chunk.data) & ~1], chunk.sample_rate)
        samples = len(data) // 2
        self._written += samples
        if self._attached:
            self._buffer += data
        else:
            self._consumed = self._written

    def played(self) -> int:
        """Exactly what the track has emitted (plus what was cleared)."""
        return self._consumed

    def is_playing(self) -> bool:
        """Whether queued audio remains."""
        return self._consumed < self._written

    def pause(self) -> None:
        """The track sends silence and keeps the queue."""
        self._paused = True

    def resume(self) -> None:
        """The track plays on from the next queued sample."""
        self._paused = False

    async def clear(self) -> int:
        """Drop what the track has not emitted."""
        heard = self._consumed
        self._paused = False
        self._buffer.clear()
        self._consumed = self._written
        self.progressed()
        return heard

    def take_frame(self) -> tuple[bytes, bool]:
        """The next 20 ms for the wire (zero-padded; silence when idle), and whether it holds agent audio."""
        self.emitted_frames += 1
        buffer = self._buffer
        if not buffer or self._paused:
            return _SILENCE, False
        data = bytes(buffer[:FRAME_BYTES])
        del buffer[:FRAME_BYTES]  # O(1) at the front of a bytearray
        self._consumed += len(data) // 2
        self.audio_frames += 1
        if len(data) < FRAME_BYTES:
            data += bytes(FRAME_BYTES - len(data))
        if not buffer:
            self.progressed()  # all of it has been played
        return data, True


class AgentAudioTrack(MediaStreamTrack):
    """The agent's voice as a WebRTC audio track: 20 ms s16 mono 48 kHz frames in real time."""

    kind = "audio"
    live: ClassVar[weakref.WeakSet[AgentAudioTrack]] = weakref.WeakSet()  # tracks not yet stopped (leak checks)

    def __init__(self, output: WebRTCOutput, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.output = output
        self.clock = clock
        self._start: float | None = None
        self._pts = 0
        AgentAudioTrack.live.add(self)

    async def recv(self) -> AudioFrame:
        """The next 20 ms frame, when its time comes."""
        if self.readyState != "live":
            raise MediaStreamError
        now = self.clock()
        if self._start is None:
            self._start = now
        else:
            self._pts += FRAME_SAMPLES
            wait = self._start + self._pts / RATE - now
            if wait > 0:
                await asyncio.sleep(wait)
                if self.readyState != "live":
                    raise MediaStreamError
            elif wait < -MAX_LAG:
                self._start = now - self._pts / RATE
        data, _ = self.output.take_frame()
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(data)
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        return frame

    def stop(self) -> None:
        """End the track."""
        super().stop()
        AgentAudioTrack.live.discard(self)


def frame_to_mono(frame: AudioFrame) -> np.ndarray[Any, Any]:
    """Any decoded audio frame → mono int16 samples at ``frame.sample_rate``."""
    data: np.ndarray[Any, Any] = frame.to_ndarray()
    channels = max(1, len(frame.layout.channels))
    if frame.format.is_planar:
        data = data.reshape(channels, -1)
        axis = 0
    else:
        data = data.reshape(-1, channels)
        axis = 1
    kind = data.dtype.kind
    if kind == "f":
        mono = data.mean(axis=axis) if channels > 1 else data.reshape(-1)
        return (np.clip(mono, -1.0, 1.0) * 32767.0).astype("<i2")
    if data.dtype.itemsize == 1:  # u8
        data = (data.astype(np.int32) - 128) << 8
    elif data.dtype.itemsize == 4:  # s32
        data = data >> 16
    if channels == 1:
        return data.reshape(-1).astype("<i2", copy=False)
    return (data.astype(np.int32).sum(axis=axis) // channels).astype("<i2")


async def read_track(
    track: MediaStreamTrack, on_pcm: Callable[[bytes], None], on_frame: Callable[[], None] | None = None
) -> None:
    """Pull frames from a remote audio track until it ends; hand 16 kHz mono int16 PCM to ``on_pcm``."""
    resampler = RateAdapter(ENGINE_RATE)
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if not isinstance(frame, AudioFrame):
            continue
        if on_frame is not None:
            on_frame()
        pcm = resampler.process(frame_to_mono(frame).tobytes(), frame.sample_rate)
        if pcm:
            on_pcm(pcm)
