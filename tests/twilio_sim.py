"""A Twilio Media Streams simulator (the WebSocket *client* side), following shared/reference/PROTOCOLS.md §1.9,
plus a tone-driven fake transcriber for fast tests through the phone path.

:class:`TwilioSim` opens the stream like Twilio does (``x-twilio-signature`` over the ws(s) URL, no params),
sends ``connected`` and ``start``, streams 20 ms μ-law ``media`` frames (``realtime=True``: every 20 ms wall clock,
silence between utterances; ``realtime=False``: as fast as possible), "plays" outbound media at 8 kHz real time,
echoes marks when played (or at once when nothing is buffered), and on ``clear`` drops its buffer and echoes every
pending mark at once. Every outbound message is validated strictly; problems land in :attr:`TwilioSim.errors`.

:class:`ToneTranscriber` hears "speech" as loud audio: a burst starts an utterance (``SpeechStarted``) and the
silence after it ends it (``Final`` with the next scripted text). μ-law and resampling destroy the marker frames
of :func:`voice.testing.fake_speech_frame`, loudness survives them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets
from twilio.request_validator import RequestValidator

from voice.audio import g711
from voice.providers.base import Final, SpeechStarted, Transcriber, TranscriberOptions, TranscriberSession

FRAME = 160  # bytes of μ-law per 20 ms
SILENCE_FRAME = bytes([0xFF]) * FRAME


def sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def tone(ms: int, freq: float = 300.0, amp: float = 9000.0, rate: int = 8000, noise: float = 1500.0) -> bytes:
    """A voice-like loud signal (a tone plus noise, so webrtcvad also calls it speech), int16 PCM."""
    n = int(rate * ms / 1000)
    t = np.arange(n) / rate
    rng = np.random.default_rng(int(freq))
    sig = amp * np.sin(2 * np.pi * freq * t) + 0.4 * amp * np.sin(2 * np.pi * 2.3 * freq * t) + rng.normal(0, noise, n)
    return np.clip(sig, -32768, 32767).astype("<i2").tobytes()


def silence(ms: int, rate: int = 8000) -> bytes:
    return bytes(int(rate * ms / 1000) * 2)


@dataclass
class Played:
    """Outbound audio the simulated caller heard: when, and the μ-law bytes."""

    at: float
    mulaw: bytes


@dataclass
class MarkEcho:
    at: float
    name: str
    cleared: bool


class TwilioSim:
    """One simulated call. Use :meth:`open` (connects and sends connected + start), then :meth:`say`,
    :meth:`dtmf`, :meth:`stop`. ``signature``: None computes the right one, "" sends none, else sent as is."""

    def __init__(
        self,
        url: str,
        auth_token: str | None,
        *,
        params: dict[str, str] | None = None,
        realtime: bool = True,
        signature: str | None = None,
        call_sid: str | None = None,
        stream_sid: str | None = None,
    ) -> None:
        self.url = url
        self.auth_token = auth_token
        self.params = dict(params or {})
        self.realtime = realtime
        self.signature = signature
        self.call_sid = call_sid or sid("CA")
        self.stream_sid = stream_sid or sid("MZ")
        self.account_sid = "AC" + "0" * 32
        self.ws: Any = None
        self.seq = 0
        self.chunk = 0
        # records
        self.events: list[tuple[float, dict]] = []  # every outbound message from the app, parsed
        self.errors: list[str] = []  # strict-validation failures
        self.received = bytearray()  # all outbound μ-law received, in order
        self.played: list[Played] = []
        self.clears: list[float] = []
        self.echoes: list[MarkEcho] = []
        self.queued_log: list[tuple[float, float]] = []  # (time, seconds buffered) after each media received
        self.closed_by_app: tuple[float, int | None] | None = None
        self.first_media_at: float | None = None
        self.starved: list[float] = []  # speaker ran dry and more audio came < 1 s later: gap lengths (s)
        self._dry_since: float | None = None
        # playback buffer: deque of ["audio", bytearray] / ["mark", name]
        self._fifo: deque[list] = deque()
        self._buffered = 0
        self._mic: deque[bytes] = deque()
        self._mic_sent = 0
        self._mic_queued = 0
        self._mic_event = asyncio.Event()
        self._mic_first_at: dict[int, float] = {}  # mic frame index → when it was sent
        self._mic_done = False
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        self._new = asyncio.Event()

    # --- connection ---------------------------------------------------------------------------------------

    def computed_signature(self) -> str:
        return RequestValidator(self.auth_token or "").compute_signature(self.url, {})

    async def connect(self) -> TwilioSim:
        headers = {}
        sig = self.computed_signature() if self.signature is None else self.signature
        if sig:
            headers["x-twilio-signature"] = sig
        self.ws = await websockets.connect(self.url, additional_headers=headers, proxy=None, max_size=None)
        self._tasks.append(asyncio.create_task(self._read()))
        self._tasks.append(asyncio.create_task(self._play()))
        return self

    async def open(self) -> TwilioSim:
        """Connect, then send ``connected`` and ``start`` (and start the 20 ms mic clock in real-time mode)."""
        await self.connect()
        await self.send_connected()
        await self.send_start()
        if self.realtime:
            self._tasks.append(asyncio.create_task(self._mic_loop()))
        return self

    async def send_raw(self, message: str | bytes | dict) -> None:
        await self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    async def send_connected(self) -> None:
        await self.send_raw({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    async def send_start(self) -> None:
        self.seq = 1
        await self.send_raw(
            {
                "event": "start",
                "sequenceNumber": "1",
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": self.params,
                },
                "streamSid": self.stream_sid,
            }
        )

    def _next_seq(self) -> str:
        self.seq += 1
        return str(self.seq)

    async def send_media(self, mulaw: bytes, stream_sid: str | None = None) -> None:
        """One media message with any payload length (20 ms frames are what Twilio sends)."""
        self.chunk += 1
        await self.send_raw(
            {
                "event": "media",
                "sequenceNumber": self._next_seq(),
                "media": {
                    "track": "inbound",
                    "chunk": str(self.chunk),
                    "timestamp": str((self.chunk - 1) * 20),
                    "payload": base64.b64encode(mulaw).decode(),
                },
                "streamSid": stream_sid or self.stream_sid,
            }
        )

    async def dtmf(self, digit: str) -> None:
        await self.send_raw(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next_seq(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def stop(self) -> None:
        """The caller hangs up: ``stop``, then close."""
        self._closing = True
        await self.send_raw(
            {
                "event": "stop",
                "sequenceNumber": self._next_seq(),
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                "streamSid": self.stream_sid,
            }
        )
        await self.close()

    async def close(self) -> None:
        self._closing = True
        if self.ws is not None:
            await self.ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- the caller speaks ----------------------------------------------------------------------------------

    async def say(self, pcm8k: bytes, then_silence_ms: int = 0) -> float:
        """Send 8 kHz int16 PCM as μ-law frames (real time or fast). Returns when the caller started speaking:
        in real time, 20 ms before its first frame was due (a frame leaves once its 20 ms were captured)."""
        mulaw = g711.encode(pcm8k + silence(then_silence_ms))
        frames = [mulaw[i : i + FRAME] for i in range(0, len(mulaw), FRAME)]
        if not self.realtime:
            first = time.monotonic()
            for i, frame in enumerate(frames):
                await self.send_media(frame)
                if i % 10 == 9:
                    await asyncio.sleep(0)
            return first
        target = self._mic_queued + len(frames)
        start_index = self._mic_queued
        self._mic.extend(frames)
        self._mic_queued = target
        first: float | None = None
        while self._mic_sent < target:
            if self._mic_done:
                raise ConnectionError("the stream is closed")
            self._mic_event.clear()
            await self._mic_event.wait()
            if first is None and self._mic_sent > start_index:
                first = self._mic_first_at.get(start_index, time.monotonic())
        return (first if first is not None else time.monotonic()) - 0.02

    async def _mic_loop(self) -> None:
        """Twilio's inbound clock: one 20 ms frame every 20 ms, silence when the caller says nothing."""
        t0 = time.monotonic()
        n = 0
        try:
            while True:
                due = t0 + n * 0.02
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                n += 1
                if self._mic:
                    # when it was due, not when it went: a busy event loop (ours or the app's) must not hide latency
                    self._mic_first_at[self._mic_sent] = due
                    frame = self._mic.popleft()
                    self._mic_sent += 1
                else:
                    frame = SILENCE_FRAME
                await self.send_media(frame)
                self._mic_event.set()
        except (asyncio.CancelledError, websockets.ConnectionClosed):
            pass
        finally:
            self._mic_done = True
            self._mic_event.set()

    # --- the app's messages -----------------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                now = time.monotonic()
                if isinstance(raw, bytes):
                    self.errors.append("binary frame from the app")
                    continue
                try:
                    msg = json.loads(raw)
                except ValueError:
                    self.errors.append(f"non-JSON frame {raw[:60]!r}")
                    continue
                self.events.append((now, msg))
                await self._handle(now, msg)
                self._new.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self._closing and self.closed_by_app is None:
                self.closed_by_app = (time.monotonic(), self.ws.close_code)
            self._new.set()

    async def _handle(self, now: float, msg: Any) -> None:
        if not isinstance(msg, dict):
            self.errors.append(f"not an object: {msg!r:.60}")
            return
        event = msg.get("event")
        if msg.get("streamSid") != self.stream_sid:
            self.errors.append(f"{event}: wrong streamSid {msg.get('streamSid')!r}")
            return
        if event == "media":
            payload = (msg.get("media") or {}).get("payload")
            try:
                data = base64.b64decode(payload or "", validate=True)
            except (binascii.Error, ValueError, TypeError):
                self.errors.append("media: payload is not base64")
                return
            if not data:
                self.errors.append("media: empty payload")
                return
            if data[:4] == b"RIFF":
                self.errors.append("media: WAV header in payload")
            if self.first_media_at is None:
                self.first_media_at = now
            if self._dry_since is not None and not self._fifo and now - self._dry_since < 1.0:
                self.starved.append(now - self._dry_since)
            self._dry_since = None
            self.received += data
            if self._fifo and self._fifo[-1][0] == "audio":
                self._fifo[-1][1] += data
            else:
                self._fifo.append(["audio", bytearray(data)])
            self._buffered += len(data)
            self.queued_log.append((now, self._buffered / 8000))
        elif event == "mark":
            name = (msg.get("mark") or {}).get("name")
            if not isinstance(name, str):
                self.errors.append("mark without a name")
                return
            if not self._fifo:
                await self._echo(name, cleared=False)  # nothing buffered: echoed at once
            else:
                self._fifo.append(["mark", name])
        elif event == "clear":
            self.clears.append(now)
            pending = [item[1] for item in self._fifo if item[0] == "mark"]
            self._fifo.clear()
            self._buffered = 0
            for name in pending:
                await self._echo(name, cleared=True)
        else:
            self.errors.append(f"unknown event {event!r}")

    async def _echo(self, name: str, cleared: bool) -> None:
        self.echoes.append(MarkEcho(time.monotonic(), name, cleared))
        try:
            seq, mark = self._next_seq(), {"name": name}
            await self.send_raw({"event": "mark", "sequenceNumber": seq, "streamSid": self.stream_sid, "mark": mark})
        except websockets.ConnectionClosed:
            pass

    async def _play(self) -> None:
        """The phone's speaker: consumes the buffer at 8 samples per ms of wall clock, echoing marks reached."""
        last = time.monotonic()
        budget = 0.0
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            budget += (now - last) * 8000
            last = now
            out = bytearray()
            while self._fifo:
                kind, item = self._fifo[0]
                if kind == "mark":
                    self._fifo.popleft()
                    await self._echo(item, cleared=False)
                    continue
                take = min(len(item), int(budget))
                if take <= 0:
                    break
                out += item[:take]
                del item[:take]
                budget -= take
                self._buffered -= take
                if not item:
                    self._fifo.popleft()
            if out:
                self.played.append(Played(now, bytes(out)))
            if not self._fifo:
                if out:  # ran dry in this tick, at the point its budget outran the audio
                    self._dry_since = now - budget / 8000
                budget = 0.0  # an idle speaker does not bank time

    # --- assertions helpers ---------------------------------------------------------------------------------

    def received_pcm(self) -> np.ndarray:
        return np.frombuffer(g711.decode(bytes(self.received)), dtype="<i2")

    def played_bytes(self) -> int:
        return sum(len(p.mulaw) for p in self.played)

    def max_queued(self, after: float = 0.0) -> float:
        return max((q for t, q in self.queued_log if t >= after), default=0.0)

    def kinds(self) -> list[str]:
        return [m.get("event") for _, m in self.events if isinstance(m, dict)]

    async def wait(self, predicate, timeout: float = 5.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; events {self.kinds()[-10:]}")
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), min(remaining, 0.05))
            except TimeoutError:
                pass


# --- a transcriber for the phone path --------------------------------------------------------------------------


@dataclass
class ToneSession(TranscriberSession):
    """Loud 20 ms frames (RMS above ``threshold``) are speech; ``end_ms`` of quiet after speech ends the utterance."""

    options: TranscriberOptions
    owner: ToneTranscriber
    threshold: float = 1500.0
    start_frames: int = 2
    end_ms: int = 200
    closed: bool = False
    fed_bytes: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _loud_run: int = 0
    _quiet_ms: int = 0
    _speaking: bool = False

    def feed(self, pcm: bytes) -> None:
        if self.closed:
            return
        self.fed_bytes += len(pcm)
        self._buf += pcm
        while len(self._buf) >= 640:
            frame = np.frombuffer(bytes(self._buf[:640]), dtype="<i2").astype(np.float64)
            del self._buf[:640]
            loud = float(np.sqrt(np.mean(frame * frame))) > self.threshold
            self._frame(loud)

    def _frame(self, loud: bool) -> None:
        now = time.monotonic()
        if loud:
            self._quiet_ms = 0
            self._loud_run += 1
            if not self._speaking and self._loud_run >= self.start_frames:
                self._speaking = True
                self.owner.speech_starts.append(now)
                if self.owner.emits_speech_start:
                    self.options.on_event(SpeechStarted())
        else:
            self._loud_run = 0
            if self._speaking:
                self._quiet_ms += 20
                if self._quiet_ms >= self.end_ms:
                    self._speaking = False
                    text = self.owner.script.popleft() if self.owner.script else self.owner.default_text
                    self.owner.finals.append((now, text))
                    self.options.on_event(Final(text, speech_ended_at=now - self._quiet_ms / 1000))

    async def close(self) -> None:
        self.closed = True


class ToneTranscriber(Transcriber):
    """Each burst of loud audio is one utterance whose text is the next of ``script`` (else ``default_text``)."""

    def __init__(self, script: list[str] | None = None, default_text: str = "hello", emits_speech_start: bool = True):
        self.script: deque[str] = deque(script or [])
        self.default_text = default_text
        self.emits_speech_start = emits_speech_start
        self.sessions: list[ToneSession] = []
        self.speech_starts: list[float] = []
        self.finals: list[tuple[float, str]] = []

    async def create_session(self, options: TranscriberOptions) -> ToneSession:
        session = ToneSession(options, self)
        self.sessions.append(session)
        return session
