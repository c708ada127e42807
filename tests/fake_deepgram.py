"""A local, protocol-faithful fake of Deepgram for tests: Nova-3 (``/v1/listen``), Flux (``/v2/listen``) and Aura
(``/v1/speak`` WebSocket and REST), after ``shared/reference/PROTOCOLS.md`` §3–5.

One port serves everything (``fake.url`` = ``http://127.0.0.1:PORT``): WebSocket upgrades are piped to an
internal ``websockets`` server, ``POST /v1/speak`` is answered by a small HTTP handler.

**Scripted recognition.** The "speech" is in the audio itself: :func:`speech` renders text as 16 kHz linear16
where each word is a run of one constant sample value that names the word (``1000 + word id``) and silence is
zeros. The fake decodes it in 10 ms ticks, so recognition follows *audio time*, as Deepgram's does, whatever the
client's chunking or replay. Results, interims, SpeechStarted, endpointing (``speech_final``), UtteranceEnd, and
Flux's turn events are derived from that, with timings in stream seconds.

Knobs (attributes, change them before connecting): ``api_keys``, ``reject_status``, ``idle_timeout``,
``interim_every_s``, ``final_every_s``, ``flux_eager_silence_ms``, ``flux_eot_silence_ms``,
``flux_blank_end_of_turn``, ``handshake_delay_s``, ``tts_ms_per_char``, ``tts_chunk_ms``, ``tts_chunk_delay_s``,
``tts_leak_frames_after_clear``, ``rest_fail_status``. Faults: :meth:`FakeDeepgram.add_fault` drops (``abort``),
closes with 1011 (``close1011``) or stalls (``stall``) the next connection on a path after some audio.
Everything the clients sent is recorded in :attr:`FakeDeepgram.conns` and :attr:`FakeDeepgram.rest_requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

# --- scripted audio -----------------------------------------------------------------------------------------

_WORDS: list[str] = []
_IDS: dict[str, int] = {}
WORD_BASE = 1000
TICK_S = 0.01


def word_id(word: str) -> int:
    if word not in _IDS:
        _IDS[word] = len(_WORDS)
        _WORDS.append(word)
    return _IDS[word]


def speech(text: str, *, rate: int = 16000, word_ms: int = 200, gap_ms: int = 30) -> bytes:
    """Linear16 audio the fake "recognizes" as ``text`` (words separated by ``gap_ms`` of silence)."""
    out = []
    for i, word in enumerate(text.split()):
        if i:
            out.append(np.zeros(rate * gap_ms // 1000, dtype="<i2"))
        out.append(np.full(rate * word_ms // 1000, WORD_BASE + word_id(word), dtype="<i2"))
    return b"".join(a.tobytes() for a in out)


def silence(ms: int, rate: int = 16000) -> bytes:
    return bytes(2 * (rate * ms // 1000))


SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)


def lin2ulaw(pcm: np.ndarray) -> np.ndarray:
    """int16 → G.711 μ-law, exactly like ``audioop.lin2ulaw`` (PROTOCOLS.md §2.4)."""
    v = pcm.astype(np.int32) >> 2
    mask = np.where(v < 0, 0x7F, 0xFF)
    v = np.minimum(np.abs(v), 8159) + 33
    seg = np.searchsorted(SEG_UEND, v, side="left")
    u = np.where(seg >= 8, 0x7F, (seg << 4) | ((v >> (seg + 1)) & 0xF))
    return (u ^ mask).astype(np.uint8)


def ulaw2lin(u: np.ndarray) -> np.ndarray:
    u = ~u.astype(np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def tts_audio(text: str, encoding: str, rate: int, ms_per_char: float) -> bytes:
    """Deterministic "speech": a 440 Hz tone, ``ms_per_char`` per character, in the requested encoding."""
    n = int(rate * len(text) * ms_per_char / 1000)
    pcm = (8000 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype("<i2")
    return lin2ulaw(pcm).tobytes() if encoding == "mulaw" else pcm.tobytes()


# --- recording ----------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """Break the next connection on ``path`` once ``after_audio_s`` of audio arrived (TTS: on ``Flush``)."""

    path: str
    after_audio_s: float = 0.0
    action: str = "abort"  # abort (no close frame) | close1011 | stall (stop answering, keep the socket)
    after_flushes: int = 0  # /v1/speak: fire on the Flush after this many


@dataclass
class Conn:
    """One WebSocket connection as the fake saw it."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_messages: list[dict] = field(default_factory=list)  # JSON text frames from the client
    sent: list[dict] = field(default_factory=list)  # JSON text frames the fake sent
    audio_bytes: int = 0
    keepalives: list[float] = field(default_factory=list)
    close_code: int | None = None  # what the fake closed with (1006 = dropped)
    fault: Fault | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def events(self, kind: str | None = None, event: str | None = None) -> list[dict]:
        return [
            m
            for m in self.sent
            if (kind is None or m.get("type") == kind) and (event is None or m.get("event") == event)
        ]


# --- recognition engines ------------------------------------------------------------------------------------


class _Decoder:
    """Turns the linear16 byte stream into 10 ms ticks: a word id, or None for silence."""

    def __init__(self, rate: int, encoding: str) -> None:
        self.bytes_per_sample = 1 if encoding in ("mulaw", "alaw") else 2
        self.encoding = encoding
        self.tick_bytes = int(rate * TICK_S) * self.bytes_per_sample
        self.pending = bytearray()

    def ticks(self, data: bytes, flush: bool = False):
        self.pending += data
        while len(self.pending) >= self.tick_bytes or (flush and self.pending):
            chunk = bytes(self.pending[: self.tick_bytes])
            del self.pending[: self.tick_bytes]
            if self.bytes_per_sample == 2:
                samples = np.frombuffer(chunk[: len(chunk) // 2 * 2], dtype="<i2")
            else:
                samples = ulaw2lin(np.frombuffer(chunk, dtype=np.uint8))
            voiced = samples[samples != 0]
            if voiced.size * 2 < max(1, samples.size):
                yield None, len(chunk) / self.tick_bytes * TICK_S
                continue
            values, counts = np.unique(voiced, return_counts=True)
            wid = int(values[counts.argmax()]) - WORD_BASE
            yield (_WORDS[wid] if 0 <= wid < len(_WORDS) else "speech"), len(chunk) / self.tick_bytes * TICK_S


class _Nova:
    """Nova-3 behaviour: interims, finals, endpointing, UtteranceEnd, SpeechStarted, Finalize (§3.4–3.7)."""

    def __init__(self, fake: FakeDeepgram, conn: Conn) -> None:
        self.fake, self.conn = fake, conn
        p = conn.param
        self.dec = _Decoder(int(p("sample_rate") or 16000), p("encoding") or "linear16")
        self.interim_results = p("interim_results") == "true"
        self.vad_events = p("vad_events") == "true"
        ep = p("endpointing")
        self.endpointing_ms = None if ep == "false" else float(ep if ep is not None else 10)
        ue = p("utterance_end_ms")
        self.utterance_end_ms = float(ue) if ue and self.interim_results else None
        self.t = 0.0
        self.cur: list | None = None  # [word, start]
        self.pending: list[tuple[str, float, float]] = []  # completed, not finalized words
        self.window_start = 0.0
        self.silence = 0.0
        self.in_utterance = False
        self.ue_armed = False
        self.last_word_end = 0.0
        self.next_interim = fake.interim_every_s
        self.next_final = fake.final_every_s

    def _words(self, include_current: bool) -> list[tuple[str, float, float]]:
        words = list(self.pending)
        if include_current and self.cur:
            words.append((self.cur[0], self.cur[1], self.t))
        return words

    def _results(self, words, *, is_final: bool, speech_final: bool = False, from_finalize: bool = False) -> dict:
        msg = {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(self.t - self.window_start, 4),
            "start": round(self.window_start, 4),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {
                "alternatives": [
                    {
                        "transcript": " ".join(w for w, _, _ in words),
                        "confidence": 0.99,
                        "words": [
                            {
                                "word": w,
                                "start": round(s, 3),
                                "end": round(e, 3),
                                "confidence": 0.99,
                                "punctuated_word": w,
                            }
                            for w, s, e in words
                        ],
                    }
                ]
            },
            "metadata": {
                "request_id": self.conn.request_id,
                "model_info": {"name": "general-nova-3", "version": "fake", "arch": "nova-3"},
                "model_uuid": "00000000-0000-4000-8000-000000000003",
            },
        }
        return msg

    def _final(self, out: list, *, speech_final: bool = False, from_finalize: bool = False) -> None:
        words = self.pending
        self.pending = []
        if words:
            self.ue_armed = True
            self.last_word_end = words[-1][2]
        out.append(self._results(words, is_final=True, speech_final=speech_final, from_finalize=from_finalize))
        self.window_start = self.t

    def tick(self, word: str | None, dt: float, out: list) -> None:
        start = self.t
        self.t += dt
        if word is not None:
            if not self.in_utterance:
                self.in_utterance = True
                if self.vad_events:
                    out.append({"type": "SpeechStarted", "channel": [0, 1], "timestamp": round(start, 3)})
            if self.cur and self.cur[0] != word:
                self.pending.append((self.cur[0], self.cur[1], start))
                self.cur = None
            if self.cur is None:
                self.cur = [word, start]
            self.silence = 0.0
            self.ue_armed = False  # a new word: no gap after the last finalized word
        else:
            if self.cur:
                self.pending.append((self.cur[0], self.cur[1], start))
                self.cur = None
            self.silence += dt
            ms = self.silence * 1000 + 1e-6
            if self.in_utterance and self.endpointing_ms is not None and ms >= self.endpointing_ms:
                self.in_utterance = False
                self._final(out, speech_final=True)
            elif self.endpointing_ms is None and self.pending and ms >= 100:
                self.in_utterance = False
                self._final(out)
            if (
                self.ue_armed
                and self.utterance_end_ms
                and (self.t - self.last_word_end) * 1000 + 1e-6 >= self.utterance_end_ms
            ):
                self.ue_armed = False
                out.append({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": round(self.last_word_end, 3)})
        if self.t + 1e-9 >= self.next_interim:
            self.next_interim += self.fake.interim_every_s
            if self.interim_results:
                out.append(self._results(self._words(True), is_final=False))
        if self.t + 1e-9 >= self.next_final:
            self.next_final += self.fake.final_every_s
            if self.pending and word is not None:
                self._final(out)

    def finalize(self, out: list, from_finalize: bool) -> None:
        if self.cur:
            self.pending.append((self.cur[0], self.cur[1], self.t))
            self.cur = None
        if self.pending or self.t > self.window_start:
            self._final(out, from_finalize=from_finalize)

    def metadata(self) -> dict:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.conn.request_id,
            "sha256": hashlib.sha256(self.conn.request_id.encode()).hexdigest(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "duration": round(self.t, 4),
            "channels": 1,
        }


class _Flux:
    """Flux behaviour: Update every 0.25 s of audio, StartOfTurn / EagerEndOfTurn / TurnResumed / EndOfTurn."""

    def __init__(self, fake: FakeDeepgram, conn: Conn) -> None:
        self.fake, self.conn = fake, conn
        p = conn.param
        self.dec = _Decoder(int(p("sample_rate") or 16000), p("encoding") or "linear16")
        self.eager = p("eager_eot_threshold") is not None
        timeout = float(p("eot_timeout_ms") or 5000)
        self.eot_ms = min(fake.flux_eot_silence_ms, timeout)
        self.t = 0.0
        self.cur: list | None = None
        self.words: list[tuple[str, float, float]] = []
        self.turn_index = 0
        self.state = "idle"  # idle | ongoing | awaiting
        self.silence = 0.0
        self.next_update = 0.25
        self.changed = False
        self.seq = 0

    def _turn_words(self) -> list[tuple[str, float, float]]:
        return self.words + ([(self.cur[0], self.cur[1], self.t)] if self.cur else [])

    def msg(self, body: dict) -> dict:
        body = {**body, "request_id": self.conn.request_id, "sequence_id": self.seq}
        self.seq += 1
        return body

    def turn_info(self, event: str, *, blank: bool = False, **extra) -> dict:
        words = self._turn_words()
        conf = {"EndOfTurn": 0.9, "EagerEndOfTurn": 0.6}.get(event, 0.1)
        body = {
            "type": "TurnInfo",
            "event": event,
            "turn_index": self.turn_index,
            "audio_window_start": round(words[0][1] if words else 0.0, 3),
            "audio_window_end": round(self.t, 3),
            "transcript": "" if blank else " ".join(w for w, _, _ in words),
            "words": [{"word": w, "confidence": 0.99, "start": round(s, 3), "end": round(e, 3)} for w, s, e in words],
            "end_of_turn_confidence": conf,
            **extra,
        }
        self.changed = True
        return self.msg(body)

    def end_turn(self, out: list, trigger: str = "model") -> None:
        out.append(self.turn_info("EndOfTurn", blank=self.fake.flux_blank_end_of_turn, trigger=trigger))
        self.state, self.words, self.cur = "idle", [], None
        self.turn_index += 1

    def tick(self, word: str | None, dt: float, out: list) -> None:
        start = self.t
        self.t += dt
        if word is not None:
            if self.cur and self.cur[0] != word:
                self.words.append((self.cur[0], self.cur[1], start))
                self.cur = None
            if self.cur is None:
                self.cur = [word, start]
            if self.state == "idle":
                self.state = "ongoing"
                out.append(self.turn_info("StartOfTurn"))
            elif self.state == "awaiting":
                self.state = "ongoing"
                out.append(self.turn_info("TurnResumed"))
            self.silence = 0.0
        else:
            if self.cur:
                self.words.append((self.cur[0], self.cur[1], start))
                self.cur = None
            self.silence += dt
            ms = self.silence * 1000 + 1e-6
            if self.state != "idle":
                if self.eager and self.state == "ongoing" and ms >= self.fake.flux_eager_silence_ms:
                    self.state = "awaiting"
                    out.append(self.turn_info("EagerEndOfTurn"))
                if ms >= self.eot_ms:
                    self.end_turn(out)
        if self.t + 1e-9 >= self.next_update:
            self.next_update += 0.25
            if not self.changed:
                out.append(self.turn_info("Update"))
            self.changed = False


# --- the server ---------------------------------------------------------------------------------------------

NET0001 = "Deepgram did not receive audio data or a text message within the timeout window. See https://dpgr.am/net0001"
SPEAK_RATES = {"linear16": {8000, 16000, 24000, 32000, 48000}, "mulaw": {8000, 16000}, "alaw": {8000, 16000}}


class FakeDeepgram:
    """The fake server. ``async with FakeDeepgram() as fake: ... fake.url ...``"""

    def __init__(self, api_keys: tuple[str, ...] = ("test-key",)) -> None:
        self.api_keys = set(api_keys)
        self.reject_status: int | None = None  # answer every handshake/request with this status
        self.handshake_delay_s = 0.0  # a slow WebSocket handshake
        self.idle_timeout = 10.0  # Nova/Flux: close 1011 after this long without any client frame
        self.interim_every_s = 0.5
        self.final_every_s = 3.0
        self.flux_eager_silence_ms = 200.0
        self.flux_eot_silence_ms = 600.0
        self.flux_blank_end_of_turn = False
        self.tts_ms_per_char = 10.0
        self.tts_chunk_ms = 40.0
        self.tts_chunk_delay_s = 0.0
        self.tts_leak_frames_after_clear = 0
        self.rest_fail_status: int | None = None
        self.faults: list[Fault] = []
        self.conns: list[Conn] = []
        self.rest_requests: list[dict] = []
        self.errors: list[str] = []  # exceptions inside the fake's handlers
        self._ws_server = None
        self._http_server = None
        self._tasks: set[asyncio.Task] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_fault(self, path: str, after_audio_s: float = 0.0, action: str = "abort", after_flushes: int = 0) -> None:
        self.faults.append(Fault(path, after_audio_s, action, after_flushes))

    def conns_on(self, path: str) -> list[Conn]:
        return [c for c in self.conns if c.path == path]

    async def __aenter__(self) -> FakeDeepgram:
        self._ws_server = await serve(
            self._ws_handler,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            process_response=self._process_response,
            ping_interval=None,
        )
        self._ws_port = self._ws_server.sockets[0].getsockname()[1]
        self._http_server = await asyncio.start_server(self._front, "127.0.0.1", 0)
        self.port = self._http_server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._http_server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._ws_server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws_server.wait_closed(), 2)
        if self.errors and exc[0] is None:
            raise AssertionError(f"the fake Deepgram server crashed: {self.errors}")

    # --- front door: pipe upgrades to the websockets server, answer REST ------------------------------------

    async def _front(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"upgrade: websocket" in head.lower():
                await self._pipe(head, reader, writer)
            else:
                await self._rest(head, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _pipe(self, head: bytes, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._ws_port)
        up_writer.write(head)

        async def copy(src, dst) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        try:
            await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        finally:
            up_writer.close()

    async def _rest(self, head: bytes, reader, writer) -> None:
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
        url = urlsplit(target)
        query = parse_qs(url.query)
        record = {"method": method, "path": url.path, "query": query, "headers": headers, "body": body}
        self.rest_requests.append(record)
        request_id = str(uuid.uuid4())

        async def reply(status: int, code: str, message: str) -> None:
            payload = json.dumps({"err_code": code, "err_msg": message, "request_id": request_id}).encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ndg-error: {message}\r\n"
                f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()

        if not self._authorized(headers.get("authorization")):
            return await reply(self.reject_status or 401, "INVALID_AUTH", "Invalid credentials.")
        if self.rest_fail_status:
            return await reply(self.rest_fail_status, "INTERNAL_SERVER_ERROR", "Injected failure.")
        if method != "POST" or url.path != "/v1/speak":
            return await reply(404, "NOT_FOUND", "Not found.")
        enc = (query.get("encoding") or ["linear16"])[0]
        container = (query.get("container") or ["wav"])[0]
        rate = int(float((query.get("sample_rate") or ["8000" if enc == "mulaw" else "24000"])[0]))
        if rate not in SPEAK_RATES.get(enc, ()) or container not in ("none", "wav"):
            return await reply(400, "INVALID_QUERY_PARAMETER", "Unsupported encoding/sample_rate/container.")
        text = json.loads(body or b"{}").get("text", "")
        if len(text) > 2000:
            return await reply(413, "PAYLOAD_TOO_LARGE", "Text exceeds 2000 characters.")
        audio = tts_audio(text, enc, rate, self.tts_ms_per_char)
        ctype = (
            "audio/wav"
            if container == "wav"
            else {"linear16": f"audio/l16;rate={rate}"}.get(enc, f"audio/{enc};rate={rate}")
        )
        writer.write(
            f"HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ntransfer-encoding: chunked\r\n"
            f"dg-request-id: {request_id}\r\ndg-model-name: {(query.get('model') or ['aura'])[0]}\r\n"
            f"dg-char-count: {len(text)}\r\nconnection: close\r\n\r\n".encode()
        )
        step = max(1, int(rate * self.tts_chunk_ms / 1000) * (1 if enc == "mulaw" else 2))
        for i in range(0, len(audio), step):
            part = audio[i : i + step]
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    # --- WebSocket handshake --------------------------------------------------------------------------------

    def _authorized(self, value: str | None) -> bool:
        if self.reject_status is not None:
            return False
        return bool(value) and value.startswith("Token ") and value[len("Token ") :] in self.api_keys

    def _error(self, connection: ServerConnection, status: int, code: str, message: str) -> Response:
        body = json.dumps({"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())})
        response = connection.respond(status, body)
        response.headers["dg-error"] = message
        response.headers["Content-Type"] = "application/json"
        return response

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.handshake_delay_s:
            await asyncio.sleep(self.handshake_delay_s)
        url = urlsplit(request.path)
        conn = Conn(url.path, parse_qs(url.query), {k: v for k, v in request.headers.raw_items()})
        self.conns.append(conn)
        connection.fake_conn = conn  # type: ignore[attr-defined]
        if not self._authorized(request.headers.get("Authorization")):
            status = self.reject_status or 401
            return self._error(
                connection, status, "INVALID_AUTH" if status == 401 else "FORBIDDEN", "Invalid credentials."
            )
        p = conn.param
        if url.path == "/v1/listen":
            if (p("model") or "").startswith("flux"):
                return self._error(connection, 400, "V2_MODEL_ON_V1_LISTEN_ENDPOINT", "Use /v2/listen for Flux.")
            if p("encoding") and not p("sample_rate"):
                return self._error(connection, 400, "INVALID_QUERY_PARAMETER", "sample_rate is required.")
            ue = p("utterance_end_ms")
            if ue and not 1000 <= int(ue) <= 5000:
                return self._error(connection, 400, "INVALID_QUERY_PARAMETER", "utterance_end_ms out of range.")
        elif url.path == "/v2/listen":
            if not (p("model") or "").startswith("flux-"):
                return self._error(connection, 400, "INVALID_QUERY_PARAMETER", "Unknown Flux model.")
            eager, eot = p("eager_eot_threshold"), p("eot_threshold") or "0.7"
            if eager is not None and float(eager) > float(eot):
                return self._error(connection, 400, "INVALID_QUERY_PARAMETER", "eager_eot_threshold > eot_threshold.")
        elif url.path == "/v1/speak":
            enc = p("encoding") or "linear16"
            if int(p("sample_rate") or 24000) not in SPEAK_RATES.get(enc, ()) or p("container") not in (None, "none"):
                return self._error(connection, 400, "INVALID_QUERY_PARAMETER", "Unsupported audio format.")
        else:
            return self._error(connection, 404, "NOT_FOUND", "Not found.")
        conn.fault = next((f for f in self.faults if f.path == url.path), None)
        if conn.fault:
            self.faults.remove(conn.fault)
        return None

    def _process_response(self, connection: ServerConnection, request: Request, response: Response) -> None:
        conn = getattr(connection, "fake_conn", None)
        if conn is not None and response.status_code == 101:
            response.headers["dg-request-id"] = conn.request_id

    async def _ws_handler(self, ws: ServerConnection) -> None:
        conn: Conn = ws.fake_conn  # type: ignore[attr-defined]
        try:
            handler = {"/v1/listen": self._listen_v1, "/v2/listen": self._listen_v2, "/v1/speak": self._speak}[
                conn.path
            ]
            await handler(ws, conn)
        except Exception as exc:  # recorded: a test can assert the fake never crashed
            if not isinstance(exc, ConnectionClosed):
                self.errors.append(repr(exc))
        finally:
            if conn.close_code is None:
                conn.close_code = ws.close_code or 1006
            conn.closed.set()

    async def _send(self, ws: ServerConnection, conn: Conn, msg: dict) -> None:
        conn.sent.append(msg)
        await ws.send(json.dumps(msg))

    async def _fault(self, ws: ServerConnection, conn: Conn) -> None:
        action = conn.fault.action if conn.fault else "abort"
        conn.fault = None
        if action == "close1011":
            conn.close_code = 1011
            await ws.close(1011, "NET-0000: internal error")
        elif action == "stall":
            async for _ in ws:
                pass
        else:
            conn.close_code = 1006
            ws.transport.abort()

    async def _idle_watch(self, ws: ServerConnection, conn: Conn, last: list[float], metadata) -> None:
        while True:
            await asyncio.sleep(min(0.05, self.idle_timeout / 4))
            if time.monotonic() - last[0] >= self.idle_timeout:
                if metadata:
                    await self._send(ws, conn, metadata())
                conn.close_code = 1011
                await ws.close(1011, NET0001)
                return

    async def _audio(self, ws, conn: Conn, engine, data: bytes) -> bool:
        """Feed audio to an engine; False if a fault fired."""
        conn.audio_bytes += len(data)
        out: list[dict] = []
        for word, dt in engine.dec.ticks(data):
            if conn.fault and engine.t >= conn.fault.after_audio_s:
                for msg in out:
                    await self._send(ws, conn, msg)
                await self._fault(ws, conn)
                return False
            engine.tick(word, dt, out)
        for msg in out:
            await self._send(ws, conn, msg)
        return True

    async def _listen_v1(self, ws: ServerConnection, conn: Conn) -> None:
        nova = _Nova(self, conn)
        last = [time.monotonic()]
        idle = asyncio.create_task(self._idle_watch(ws, conn, last, nova.metadata))
        try:
            async for frame in ws:
                last[0] = time.monotonic()
                if isinstance(frame, bytes):
                    if not frame:  # an empty binary frame means CloseStream
                        frame = json.dumps({"type": "CloseStream"})
                    elif not await self._audio(ws, conn, nova, frame):
                        return
                    else:
                        continue
                try:
                    msg = json.loads(frame)
                except ValueError:
                    await self._send(
                        ws,
                        conn,
                        {
                            "type": "Error",
                            "variant": "SchemaError",
                            "description": "Invalid JSON",
                            "message": frame[:200],
                        },
                    )
                    continue
                conn.client_messages.append(msg)
                kind = msg.get("type")
                if kind == "KeepAlive":
                    conn.keepalives.append(time.monotonic())
                elif kind in ("Finalize", "CloseStream"):
                    out: list[dict] = []
                    for word, dt in nova.dec.ticks(b"", flush=True):
                        nova.tick(word, dt, out)
                    nova.finalize(out, from_finalize=kind == "Finalize")
                    for m in out:
                        await self._send(ws, conn, m)
                    if kind == "CloseStream":
                        await self._send(ws, conn, nova.metadata())
                        conn.close_code = 1000
                        await ws.close(1000)
                        return
                else:
                    await self._send(
                        ws,
                        conn,
                        {
                            "type": "Error",
                            "variant": "SchemaError",
                            "description": f"Unknown type {kind}",
                            "message": frame[:200],
                        },
                    )
        finally:
            idle.cancel()

    async def _listen_v2(self, ws: ServerConnection, conn: Conn) -> None:
        flux = _Flux(self, conn)
        await self._send(ws, conn, flux.msg({"type": "Connected"}))
        last = [time.monotonic()]
        idle = asyncio.create_task(self._idle_watch(ws, conn, last, None))
        try:
            async for frame in ws:
                last[0] = time.monotonic()
                if isinstance(frame, bytes):
                    if not await self._audio(ws, conn, flux, frame):
                        return
                    continue
                msg = json.loads(frame)
                conn.client_messages.append(msg)
                kind = msg.get("type")
                if kind == "CloseStream":
                    out: list[dict] = []
                    for word, dt in flux.dec.ticks(b"", flush=True):
                        flux.tick(word, dt, out)
                    out.append(flux.turn_info("Update"))
                    for m in out:
                        await self._send(ws, conn, m)
                    conn.close_code = 1005  # Flux closes without a status code
                    ws.transport.write(b"\x88\x00")  # a Close frame with no payload
                    await asyncio.sleep(0.05)
                    ws.transport.close()
                    return
                if kind == "ForceEndTurn" and flux.state != "idle":
                    out = []
                    flux.end_turn(out, trigger="manual")
                    for m in out:
                        await self._send(ws, conn, m)
                elif kind == "Configure":
                    await self._send(
                        ws,
                        conn,
                        flux.msg(
                            {
                                "type": "ConfigureSuccess",
                                "thresholds": msg.get("thresholds", {}),
                                "keyterms": msg.get("keyterms", []),
                            }
                        ),
                    )
        finally:
            idle.cancel()

    async def _speak(self, ws: ServerConnection, conn: Conn) -> None:
        enc = conn.param("encoding") or "linear16"
        rate = int(conn.param("sample_rate") or 24000)
        await self._send(
            ws,
            conn,
            {
                "type": "Metadata",
                "request_id": conn.request_id,
                "model_name": conn.param("model") or "aura-asteria-en",
                "model_version": "fake",
                "model_uuid": "00000000-0000-4000-8000-00000000a0a0",
            },
        )
        buffered: list[str] = []
        jobs: asyncio.Queue = asyncio.Queue()
        flushes: list[float] = []
        seq = [0]
        current: list[asyncio.Task | None] = [None]

        async def generate(text: str, n: int) -> None:
            audio = tts_audio(text, enc, rate, self.tts_ms_per_char)
            step = max(1, int(rate * self.tts_chunk_ms / 1000) * (1 if enc == "mulaw" else 2))
            for i in range(0, len(audio), step):
                await ws.send(audio[i : i + step])
                conn.audio_bytes += len(audio[i : i + step])
                await asyncio.sleep(self.tts_chunk_delay_s)
            await self._send(ws, conn, {"type": "Flushed", "sequence_id": n})

        async def worker() -> None:
            while True:
                text, n = await jobs.get()
                current[0] = asyncio.create_task(generate(text, n))
                with contextlib.suppress(asyncio.CancelledError):
                    await current[0]
                current[0] = None

        work = asyncio.create_task(worker())
        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    continue
                msg = json.loads(frame)
                conn.client_messages.append(msg)
                kind = msg.get("type")
                if kind == "Speak":
                    text = msg.get("text", "")
                    if len(text) > 2000:
                        await self._send(
                            ws,
                            conn,
                            {
                                "type": "Warning",
                                "code": "TEXT_LENGTH_WARNING",
                                "description": "Text input exceeds recommended length for optimal performance",
                            },
                        )
                    buffered.append(text)
                elif kind == "Flush":
                    now = time.monotonic()
                    flushes[:] = [t for t in flushes if now - t < 60] + [now]
                    if (
                        conn.fault
                        and len([m for m in conn.client_messages if m["type"] == "Flush"]) > conn.fault.after_flushes
                    ):
                        await self._fault(ws, conn)
                        return
                    if len(flushes) > 20:
                        await self._send(
                            ws, conn, {"type": "Warning", "code": "FLUSH_LIMIT", "description": "Too many flushes"}
                        )
                        continue
                    jobs.put_nowait(("".join(buffered), seq[0]))
                    seq[0] += 1
                    buffered.clear()
                elif kind == "Clear":
                    buffered.clear()
                    while not jobs.empty():
                        jobs.get_nowait()
                    task = current[0]
                    if task is not None:
                        if self.tts_leak_frames_after_clear:  # audio already "in flight"
                            step = max(1, int(rate * self.tts_chunk_ms / 1000) * (1 if enc == "mulaw" else 2))
                            for _ in range(self.tts_leak_frames_after_clear):
                                await ws.send(tts_audio("x" * 8, enc, rate, self.tts_ms_per_char)[:step])
                        task.cancel()
                    await self._send(ws, conn, {"type": "Cleared", "sequence_id": seq[0]})
                elif kind == "Close":
                    jobs.put_nowait(("".join(buffered), seq[0]))
                    buffered.clear()
                    while not jobs.empty() or current[0] is not None:
                        await asyncio.sleep(0.01)
                    conn.close_code = 1000
                    await ws.close(1000)
                    return
                else:
                    conn.close_code = 1008
                    await ws.close(1008, "Unknown message type")
                    return
        finally:
            work.cancel()
            if current[0] is not None:
                current[0].cancel()
