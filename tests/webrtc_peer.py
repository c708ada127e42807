"""A Python WebRTC client for tests and benchmarks: what a browser does, with aiortc.

It sends a microphone track that plays queued 16 kHz PCM in real time (silence in between), opens the ``voice``
data channel, POSTs the offer to ``/agents/{agent}/{instance}/webrtc``, records every JSON message and the agent's
audio (converted back to 16 kHz mono, with arrival times; silence where the sender paused).

On loopback aioice skips 127.0.0.1 when gathering host candidates, so peers on one machine never connect:
:func:`use_loopback_ice` patches ``aioice.ice.get_host_addresses`` to offer 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from voice.audio import StreamResampler, resample
from voice.transports.webrtc.media import frame_to_mono

RATE = 48_000
FRAME = 960


def use_loopback_ice() -> Callable[[], None]:
    """Make aioice gather 127.0.0.1 host candidates (it skips loopback by default); returns the undo."""
    import aioice.ice

    original = aioice.ice.get_host_addresses

    def loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = loopback

    def undo() -> None:
        aioice.ice.get_host_addresses = original

    return undo


class SpeechTrack(MediaStreamTrack):
    """A microphone: 20 ms 48 kHz mono frames in real time, from :meth:`play`'s queue, silence otherwise."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()
        self._start: float | None = None
        self._pts = 0
        self.frames_sent = 0

    def play(self, pcm16k: bytes) -> float:
        """Queue 16 kHz speech; returns its duration in seconds (plus what was queued before)."""
        self._buffer += resample(pcm16k, 16_000, RATE)
        return len(self._buffer) / 2 / RATE

    def play_48k(self, pcm48k: bytes) -> None:
        """Queue audio already at 48 kHz (no resampling: benchmarks)."""
        self._buffer += pcm48k

    def queued_seconds(self) -> float:
        return len(self._buffer) / 2 / RATE

    async def played(self) -> None:
        while self._buffer:
            await asyncio.sleep(0.02)

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += FRAME
            wait = self._start + self._pts / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        data = bytes(self._buffer[: FRAME * 2])
        del self._buffer[: FRAME * 2]
        data += bytes(FRAME * 2 - len(data))
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(data)
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        self.frames_sent += 1
        return frame


class WebRTCTestPeer:
    """One WebRTC client of ``base_url`` (http://host:port)."""

    def __init__(
        self,
        base_url: str,
        agent: str,
        instance: str,
        *,
        send_audio: bool = True,
        receive_audio: bool = True,
        query: str = "",
        keep_audio: bool = True,
    ) -> None:
        self.url = f"{base_url}/agents/{agent}/{instance}/webrtc" + (f"?{query}" if query else "")
        self.send_audio = send_audio
        self.receive_audio = receive_audio
        self.keep_audio = keep_audio  # False: only count received frames (benchmarks)
        self.frames_received = 0
        self.pc = RTCPeerConnection()
        self.mic = SpeechTrack() if send_audio else None
        self.channel: Any = None
        self.messages: list[tuple[float, dict]] = []
        self.audio: list[tuple[float, bytes]] = []  # (arrival time, 16 kHz mono PCM of one frame or pause)
        self.closed_message: dict | None = None
        self.answer_sdp = ""
        self._new = asyncio.Event()
        self._reader: asyncio.Task | None = None

    async def connect(self, start_call: bool = False, timeout: float = 10.0) -> WebRTCTestPeer:
        pc = self.pc
        if self.mic is not None:
            if self.receive_audio:
                pc.addTrack(self.mic)
            else:
                pc.addTransceiver(self.mic, direction="sendonly")
        elif self.receive_audio:
            pc.addTransceiver("audio", direction="recvonly")
        self.channel = pc.createDataChannel("voice")
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        self.channel.on("message", self._on_message)
        pc.on("track", self._on_track)
        await pc.setLocalDescription(await pc.createOffer())
        body = {"sdp": pc.localDescription.sdp, "type": "offer"}
        if start_call:
            body["start_call"] = True
        async with httpx.AsyncClient(timeout=timeout) as http:
            response = await http.post(self.url, json=body)
        if response.status_code != 200:
            await pc.close()
            raise PeerRefused(response.status_code, response.json().get("detail", response.text))
        answer = response.json()
        self.answer_sdp = answer["sdp"]  # as the server wrote it (aiortc's remoteDescription re-serializes it)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await asyncio.wait_for(opened.wait(), timeout)
        await self.wait_for("welcome", timeout=timeout)
        return self

    def _on_message(self, message: Any) -> None:
        data = json.loads(message)
        if data.get("type") == "close":
            self.closed_message = data
        self.messages.append((time.monotonic(), data))
        self._new.set()

    def _on_track(self, track: Any) -> None:
        if track.kind == "audio" and self._reader is None:
            self._reader = asyncio.create_task(self._read(track))

    async def _read(self, track: Any) -> None:
        resampler = StreamResampler(RATE, 16_000)
        expected: int | None = None  # RTP time (48 kHz) where the next frame should start
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.frames_received += 1
            if not self.keep_audio:
                continue
            if expected is not None and frame.pts > expected:  # the sender paused (DTX): a browser plays silence
                self.audio.append((time.monotonic(), bytes(2 * ((frame.pts - expected) // 3))))
            expected = frame.pts + frame.samples
            pcm = frame_to_mono(frame).tobytes()
            if frame.sample_rate != RATE:
                pcm = resample(pcm, frame.sample_rate, RATE)
            self.audio.append((time.monotonic(), resampler.process(pcm)))

    # --- messages ------------------------------------------------------------------------------------------------

    def send(self, message: dict | str) -> None:
        self.channel.send(message if isinstance(message, str) else json.dumps(message))

    def json(self, kind: str | None = None) -> list[dict]:
        return [m for _, m in self.messages if kind is None or m.get("type") == kind]

    def mark(self) -> int:
        return len(self.messages)

    async def wait_for(self, kind: str, timeout: float = 10.0, after: int = 0, **fields) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, (_, m) in enumerate(self.messages):
                if i >= after and m.get("type") == kind and all(m.get(k) == v for k, v in fields.items()):
                    return m
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind} {fields} within {timeout}s; got {self.json()}")
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), remaining)
            except TimeoutError:
                pass

    async def start_call(self) -> None:
        mark = self.mark()
        self.send({"type": "start_call"})
        await self.wait_for("audio_config", after=mark)
        await self.wait_for("status", after=mark, status="listening")

    # --- audio ---------------------------------------------------------------------------------------------------

    def received_since(self, t: float) -> bytes:
        return b"".join(pcm for at, pcm in self.audio if at >= t)

    def loud_seconds(self, since: float = 0.0, dbfs: float = -45.0) -> float:
        """Seconds of received 20 ms frames louder than ``dbfs``."""
        limit = 32768 * 10 ** (dbfs / 20)
        n = 0
        for at, pcm in self.audio:
            if at >= since and pcm:
                x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
                n += float(np.sqrt(np.mean(x * x))) > limit
        return n * 0.02

    # --- ending --------------------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Hang up like a closing tab: the server sees the connection closed."""
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    def vanish(self) -> None:
        """Drop off the network without a goodbye (cable pulled, process frozen): close the UDP sockets."""
        for transceiver in self.pc.getTransceivers():
            self._drop_ice(transceiver.sender.transport)
        if self.pc.sctp is not None:
            self._drop_ice(self.pc.sctp.transport)

    @staticmethod
    def _drop_ice(dtls: Any) -> None:
        if dtls is None:
            return
        connection = dtls.transport._connection
        for protocol in list(connection._protocols):
            if protocol.transport is not None:
                protocol.transport.close()


class PeerRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
