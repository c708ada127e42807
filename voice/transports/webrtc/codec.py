"""The WebRTC transport's own Opus path (the codec: :mod:`voice.transports.webrtc.opus`): what makes WebRTC cheap.

Outgoing, :class:`OpusAgentTrack` encodes the agent's audio once, mono, at :data:`BITRATE`, in :data:`PACKET_MS`
packets, on the event loop, and hands aiortc's RTP sender ready ``av.Packet`` objects, which it packetizes without
decoding or encoding anything (aiortc otherwise upmixes every 20 ms frame to stereo and encodes it at 96 kbps in a
worker thread, silence included). Silence costs nothing: after the agent stops, the encoder runs on zeros until
it produces its digital-silence packet (look-ahead flushed, state at rest, so the listener's decoder is at rest
too and the next words start clean), then the track sends nothing until there is audio again; the RTP timestamps
jump over the pause, as with Opus DTX, and browsers play silence. What was heard is accounted exactly as before:
the track takes the frames from :class:`~voice.transports.webrtc.media.WebRTCOutput` when it sends them, and ``clear()``
drops the rest.

Incoming, :func:`tap_receiver` puts a :class:`DirectOpusInput` in place of the queue through which an aiortc
``RTCRtpReceiver`` hands encoded frames to its decoder thread: Opus frames are decoded right there, straight to
16 kHz mono (libopus resamples and mixes down inside the codec), and fed to the call, instead of a 48 kHz stereo
decode in a thread, a hop back to the loop per frame, a mixdown and a 48→16 kHz resampler. Frames in any other
codec still go to aiortc's decoder thread and arrive through the track as before.

That queue is a private attribute of aiortc's receiver (``RTCRtpReceiver.__decoder_queue``, aiortc 1.9 to 1.16):
:func:`tap_receiver` checks it is what it expects and returns None otherwise, leaving aiortc's path in place.
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import logging
import queue
import time
from collections.abc import Callable
from typing import Any

from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, Packet

from ...audio import ENGINE_RATE, AudioChunk
from .jitter import AudioJitter, Released
from .media import FRAME_SAMPLES, MAX_LAG, RATE, AgentAudioTrack, WebRTCOutput
from .opus import OpusDecoder, OpusEncoder, OpusError, libopus

log = logging.getLogger("voice.webrtc")

BITRATE = 64_000  # mono CELT: PESQ-WB 4.46 on Piper speech, against 4.58 for aiortc's 96 kbps stereo (BENCHMARKS.md)
COMPLEXITY = 3  # 4.48 at 5, for a fifth more CPU; SILK/hybrid ("voip") costs three times as much at 32 kbps
APPLICATION = "audio"
PACKET_MS = 60  # one packet (three 20 ms CELT frames) per 60 ms: a third of aiortc's per-packet Python work
SETTLE_FRAMES = 50  # most zero frames encoded after speech before the silence packet is used regardless
TIME_BASE = fractions.Fraction(1, RATE)
_RECEIVER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_RECEIVER_THREAD = "_RTCRtpReceiver__decoder_thread"
_RECEIVER_JITTER = "_RTCRtpReceiver__jitter_buffer"
CALLER_PACKET_MS = 40  # asked of the caller: half of aiortc's per-packet work against 20 ms, +20 ms packetization
JITTER_HOLD = 2  # packets held back while one is missing (80 ms at 40 ms packets), then it is rebuilt/concealed
MAX_CONCEAL = RATE // 5  # the longest gap filled in (RTP timestamp units, 48 kHz): 200 ms


def available() -> bool:
    """Whether libopus can be used directly (else aiortc's codec path is the only one)."""
    return libopus() is not None


def new_encoder() -> OpusEncoder:
    """An encoder for one call's agent audio: 48 kHz mono."""
    return OpusEncoder(RATE, 1, BITRATE, COMPLEXITY, APPLICATION)


@functools.lru_cache(maxsize=1)
def silence_packet() -> bytes:
    """The packet the encoder settles on for digital silence: feed it zeros until two packets are the same."""
    encoder = new_encoder()
    zeros = bytes(PACKET_MS * RATE // 1000 * 2)
    packet = encoder.encode(zeros)
    for _ in range(SETTLE_FRAMES):
        previous, packet = packet, encoder.encode(zeros)
        if packet == previous:
            break
    return packet


class OpusOutput(WebRTCOutput):
    """:class:`~voice.transports.webrtc.media.WebRTCOutput` that wakes its track when audio is queued: the track sends
    nothing while there is nothing to say."""

    def __init__(self) -> None:
        super().__init__()
        self.queued = asyncio.Event()

    def pending(self) -> bool:
        """Whether there is audio to send now (queued and not paused)."""
        return not self._paused and self.queued_samples() > 0

    async def write(self, chunk: AudioChunk) -> None:
        """Queue audio and wake the track."""
        await super().write(chunk)
        if self.queued_samples():
            self.queued.set()

    def resume(self) -> None:
        """Play on, waking the track (it sent nothing while paused)."""
        super().resume()
        self.queued.set()


class OpusAgentTrack(AgentAudioTrack):
    """The agent's track, already Opus-encoded: once :meth:`use_opus` was called (the answer settled on Opus),
    ``recv()`` returns an ``av.Packet`` of :data:`PACKET_MS` every :data:`PACKET_MS` while the agent speaks, and
    nothing at all while it is silent (the RTP timestamps jump over the pause, as with Opus DTX); raw frames for
    aiortc to encode before that or without it."""

    def __init__(self, output: OpusOutput, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(output, clock)
        self.output: OpusOutput = output
        self.encoder: OpusEncoder | None = None
        self._silence = b""
        self._settling = 0  # zero frames still to encode before the encoder is at rest
        self._sent = 0  # duration of the last packet (samples)
        self.packets = 0  # counters, for tests and benchmarks
        self.encoded_frames = 0
        self.late_packets = 0  # sent more than a packet's duration after their time (the loop is overloaded)

    def use_opus(self) -> None:
        """Send Opus packets from now on (the negotiated codec is Opus)."""
        self.encoder = new_encoder()
        self._silence = silence_packet()

    async def recv(self) -> AudioFrame | Packet:  # type: ignore[override]  # aiortc's sender takes both
        """The next packet when its time comes (raw frames until :meth:`use_opus`)."""
        if self.encoder is None:
            return await super().recv()
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = self.clock()
        self._pts += self._sent
        if not self._settling and not self.output.pending():
            await self._until_audio()
        wait = self._start + self._pts / RATE - self.clock()
        if wait > 0:
            await asyncio.sleep(wait)
            if self.readyState != "live":
                raise MediaStreamError
        elif wait < -MAX_LAG:
            self._start -= wait
        if wait < -PACKET_MS / 1000:
            self.late_packets += 1
        return self._packet()

    async def _until_audio(self) -> None:
        """Sleep until audio is queued, then continue the timeline at the present moment."""
        output = self.output
        while not output.pending():
            output.queued.clear()
            await output.queued.wait()
            if self.readyState != "live":
                raise MediaStreamError
        assert self._start is not None
        elapsed = int((self.clock() - self._start) * RATE)
        self._pts = max(self._pts, elapsed - elapsed % FRAME_SAMPLES)

    def _packet(self) -> Packet:
        encoder = self.encoder
        assert encoder is not None
        frames = []
        audio = False
        for _ in range(PACKET_MS // 20):
            data, has_audio = self.output.take_frame()
            frames.append(data)
            audio = audio or has_audio
        pcm = b"".join(frames)
        payload = encoder.encode(pcm)
        self.encoded_frames += len(frames)
        if audio:
            self._settling = SETTLE_FRAMES
        else:
            self._settling = 0 if payload == self._silence else max(0, self._settling - len(frames))
        self._sent = len(frames) * FRAME_SAMPLES
        self.packets += 1
        packet = Packet(payload)
        packet.pts = self._pts
        packet.time_base = TIME_BASE
        return packet

    def stop(self) -> None:
        """End the track (a waiting ``recv()`` sees it)."""
        super().stop()
        self.output.queued.set()  # wakes a recv() waiting for audio, which then sees the track ended


class DirectOpusInput(queue.Queue):
    """Stands in for an ``RTCRtpReceiver``'s decoder queue: decodes Opus on the spot to 16 kHz mono for
    ``on_pcm``; ``None`` (the receiver stopping) and frames of other codecs go on to aiortc's decoder thread.
    Once :func:`install_jitter` ran, Opus packets come in order through :meth:`receive` instead."""

    def __init__(self, on_pcm: Callable[[bytes], None], on_frame: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.on_pcm = on_pcm
        self.on_frame = on_frame
        self.decoder = OpusDecoder(ENGINE_RATE, 1)
        self.decoded_frames = 0
        self.decoded_samples = 0  # 16 kHz samples decoded from packets (lost audio filled in not included)
        self.concealed_samples = 0  # 16 kHz samples of lost packets, rebuilt from FEC or concealed
        self.errors = 0
        self._end: int | None = None  # RTP timestamp (48 kHz) where the last decoded packet ended

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """An encoded frame from the receiver: decoded here if it is Opus."""
        if item is None or item[0].name.lower() != "opus":
            super().put(item, block, timeout)
            return
        if self.on_frame is not None:
            self.on_frame()
        if item[1].data:
            self._decode(item[1].data, None)

    def receive(self, released: list[Released]) -> None:
        """Packets from :class:`~voice.transports.webrtc.jitter.AudioJitter`, in order; the audio of packets that
        never came (up to :data:`MAX_CONCEAL` at a time) is rebuilt from the next packet's in-band FEC when it carries
        some, else concealed by libopus, so the call hears time pass as it did."""
        for timestamp, payload, after_loss in released:
            if not payload:  # nothing to decode (padding only): libopus would conceal its longest packet
                continue
            if after_loss and self._end is not None:
                missing = (timestamp - self._end) % (1 << 32)
                if 0 < missing <= MAX_CONCEAL:
                    pcm = self.decoder.recover(payload, missing * ENGINE_RATE // RATE)
                    self.concealed_samples += len(pcm) // 2
                    self._deliver(pcm)
            self._decode(payload, timestamp)

    def _decode(self, payload: bytes, timestamp: int | None) -> None:
        try:
            pcm = self.decoder.decode(payload)
        except OpusError as exc:
            self.errors += 1
            if self.errors == 1 or self.errors % 100 == 0:
                log.warning("undecodable Opus frame from the peer (%d so far): %s", self.errors, exc)
            return
        self.decoded_frames += 1
        self.decoded_samples += len(pcm) // 2
        if timestamp is not None:
            self._end = (timestamp + len(pcm) // 2 * (RATE // ENGINE_RATE)) % (1 << 32)
        self._deliver(pcm)

    def _deliver(self, pcm: bytes) -> None:
        try:
            self.on_pcm(pcm)
        except Exception:  # this runs inside aiortc's packet handling, which must go on
            log.exception("handling the peer's audio failed")


class OpusJitterTap:
    """In place of an aiortc receiver's audio jitter buffer (its ``add(packet)``): Opus packets of the negotiated
    payload type go through :class:`~voice.transports.webrtc.jitter.AudioJitter` straight to the
    :class:`DirectOpusInput` (nothing is handed back to aiortc, so its decoder queue stays idle); any other
    payload type goes to aiortc's own buffer as before."""

    def __init__(self, fallback: Any, tap: DirectOpusInput, payload_type: int, hold: int = JITTER_HOLD) -> None:
        self.fallback = fallback
        self.tap = tap
        self.payload_type = payload_type
        self.order = AudioJitter(hold)
        self.ssrc: int | None = None

    @property
    def capacity(self) -> int:
        """As aiortc's buffer reports it."""
        return int(self.fallback.capacity)

    def add(self, packet: Any) -> tuple[bool, Any]:
        """One RTP packet (payload already depayloaded into ``packet._data`` by aiortc)."""
        if packet.payload_type != self.payload_type:
            return self.fallback.add(packet)
        if packet.ssrc != self.ssrc:  # the first packet, or the sender started a new stream
            if self.ssrc is not None:
                self.order.reset()
            self.ssrc = packet.ssrc
        if self.tap.on_frame is not None:
            self.tap.on_frame()
        self.tap.receive(self.order.push(packet.sequence_number, packet.timestamp, packet._data))
        return False, None


def tap_receiver(
    receiver: Any, on_pcm: Callable[[bytes], None], on_frame: Callable[[], None] | None = None
) -> DirectOpusInput | None:
    """Decode ``receiver``'s Opus frames directly (see the module doc). Must run before the receiver starts
    (before the connection is up); returns the tap, or None if this aiortc does not look as expected."""
    if not available():
        return None
    current = getattr(receiver, _RECEIVER_QUEUE, None)
    if type(current) is not queue.Queue or not current.empty() or getattr(receiver, _RECEIVER_THREAD, 1) is not None:
        log.warning("aiortc's RTCRtpReceiver is not as expected: the caller's audio takes aiortc's decoder")
        return None
    tap = DirectOpusInput(on_pcm, on_frame)
    setattr(receiver, _RECEIVER_QUEUE, tap)
    return tap


def install_jitter(receiver: Any, tap: DirectOpusInput, payload_type: int) -> OpusJitterTap | None:
    """Put :class:`OpusJitterTap` in place of ``receiver``'s jitter buffer, once the answer settled on Opus with
    ``payload_type`` and before media flows; None (aiortc's buffer stays) if this aiortc does not look as expected."""
    current = getattr(receiver, _RECEIVER_JITTER, None)
    if type(current).__name__ != "JitterBuffer" or not callable(getattr(current, "add", None)):
        log.warning("aiortc's jitter buffer is not as expected: the caller's audio keeps aiortc's")
        return None
    jitter = OpusJitterTap(current, tap, payload_type)
    setattr(receiver, _RECEIVER_JITTER, jitter)
    return jitter


def _audio_section(sdp: str) -> tuple[list[str], int, int]:
    """(the lines of ``sdp``, where its first audio section starts and ends); start == end without one."""
    lines = sdp.split("\r\n" if "\r\n" in sdp else "\n")
    start = next((i for i, line in enumerate(lines) if line.startswith("m=audio")), len(lines))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("m=")), len(lines))
    return lines, start, end


def opus_payload_type(sdp: str) -> int | None:
    """The payload type of Opus/48000 in the first audio section of ``sdp``, if it has one."""
    lines, start, end = _audio_section(sdp)
    for line in lines[start:end]:
        if line.startswith("a=rtpmap:"):
            pt, _, codec = line[len("a=rtpmap:"):].partition(" ")
            if codec.lower().startswith("opus/48000") and pt.isdigit():
                return int(pt)
    return None


def negotiated_opus(sdp: str) -> bool:
    """Whether the first audio section of a local description sends Opus at 48 kHz (its first codec, what aiortc's
    sender uses)."""
    pt = opus_payload_type(sdp)
    lines, start, _ = _audio_section(sdp)
    formats = lines[start].split()[3:4] if start < len(lines) else []
    return pt is not None and formats == [str(pt)]


def ask_caller_for(sdp: str, packet_ms: int = CALLER_PACKET_MS, max_rate: int = ENGINE_RATE) -> str:
    """The answer ``sdp`` asking the caller's Opus encoder for ``packet_ms`` packets (``a=ptime``) and for no more
    audio bandwidth than ``max_rate`` playback needs (``maxplaybackrate``, RFC 7587): the engine hears 16 kHz, so
    anything above 8 kHz would be sent and decoded for nothing, and browsers then choose a wideband bitrate.
    Fewer, longer packets are what makes the caller's side cheap (aiortc's per-packet work dominates). Only the
    first audio section, and only if it carries Opus; an ``a=ptime`` or ``maxplaybackrate`` already there stays."""
    pt = opus_payload_type(sdp)
    if pt is None:
        return sdp
    lines, start, end = _audio_section(sdp)
    section = lines[start:end]
    rtpmap = next(i for i, line in enumerate(section) if line.startswith(f"a=rtpmap:{pt} "))
    fmtp = next((i for i, line in enumerate(section) if line.startswith(f"a=fmtp:{pt} ")), None)
    if fmtp is None:
        section.insert(rtpmap + 1, f"a=fmtp:{pt} maxplaybackrate={max_rate}")
    elif "maxplaybackrate=" not in section[fmtp]:
        section[fmtp] += f";maxplaybackrate={max_rate}"
    if packet_ms and not any(line.startswith("a=ptime:") for line in section):
        last = max(i for i, line in enumerate(section) if line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")))
        section.insert(last + 1, f"a=ptime:{packet_ms}")
    return ("\r\n" if "\r\n" in sdp else "\n").join(lines[:start] + section + lines[end:])
