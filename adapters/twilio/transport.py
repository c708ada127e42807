"""The Twilio Media Stream transport: Twilio's JSON events ↔ a :class:`~voice.call.Call`.

Lifecycle of one stream (reference §1.3): ``connected`` → ``start`` (streamSid, callSid, customParameters) →
``media``/``dtmf``/``mark`` … → ``stop`` (or the socket just closes). On ``start`` the agent instance named by
the TwiML parameters is acquired and a call starts; inbound μ-law 8 kHz is decoded, upsampled to 16 kHz (a
low-latency streaming FIR per call, :mod:`.upsample`) and fed to the call; ``dtmf`` goes to ``agent.on_dtmf``;
mark echoes go to the :class:`~adapters.twilio.output.TwilioOutput`. Anything malformed is logged and
dropped — a bad frame never ends a phone call. The call closes (turn cancelled, STT closed, heard text saved)
on ``stop`` or disconnect.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from voice import protocol
from voice.agent import maybe_await
from voice.call import Call, Peer
from voice.runtime import Runtime

from . import g711
from .output import TwilioOutput
from .signature import check_call_token
from .upsample import Upsampler2x

log = logging.getLogger("voice.twilio")

MAX_EVENT_CHARS = 1 << 20  # a JSON event larger than this is dropped (Twilio's are ~300 bytes)
MAX_PCM_PIECE = 8000  # bytes of 16 kHz PCM handed to the call at once (0.25 s)
DTMF_DIGITS = frozenset("0123456789*#ABCD")


@dataclass(frozen=True)
class StreamConfig:
    """How streams are served (set by :func:`~adapters.twilio.routes.mount_twilio`)."""

    agent: str  # the only agent this endpoint serves
    auth_token: str | None = None  # when set, ``start`` must carry the per-call token from our TwiML
    lead: float = 0.16  # seconds of agent audio kept queued at Twilio
    mark_every: float = 0.1  # seconds between marks


class TwilioPeer(Peer):
    """Owns the socket's single writer, so media, marks and clears leave in order. Engine messages meant for
    browser clients (transcripts, status, metrics) have no place on a phone line: logged at debug level."""

    def __init__(self, websocket: WebSocket, config: StreamConfig, max_queue: int = 4096) -> None:
        self.websocket = websocket
        self.stream_sid: str | None = None
        self.closed = False
        self.max_queue = max_queue
        self.output = TwilioOutput(self, lead=config.lead, mark_every=config.mark_every)
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop())

    # --- Peer -----------------------------------------------------------------------------------------------

    def send_json(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "error":
            log.info("call error on stream %s: %s", self.stream_sid, message.get("message"))
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("stream %s: %s", self.stream_sid, json.dumps(message)[:200])

    async def close(self, code: int = protocol.CLOSE_NORMAL, reason: str = "") -> None:
        """Close the socket: on a ``<Connect><Stream>`` with no TwiML after it, this hangs up the call."""
        if not self.closed:
            self.closed = True
            self._queue.put_nowait({"type": "websocket.close", "code": code, "reason": reason[:120]})
        self.output.close()
        await self._wait_writer()

    # --- to Twilio ------------------------------------------------------------------------------------------

    def send_media(self, mulaw: bytes) -> None:
        payload = base64.b64encode(mulaw).decode("ascii")
        self._event({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})

    def send_mark(self, name: str) -> None:
        self._event({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    def send_clear(self) -> None:
        self._event({"event": "clear", "streamSid": self.stream_sid})

    def _event(self, event: dict[str, Any]) -> None:
        if self.closed or self.stream_sid is None:
            return
        if self._queue.qsize() >= self.max_queue:
            log.warning("closing stream %s: Twilio is not reading (%d queued)", self.stream_sid, self._queue.qsize())
            self.closed = True
            self._queue.put_nowait({"type": "websocket.close", "code": protocol.CLOSE_POLICY, "reason": "not reading"})
            return
        self._queue.put_nowait({"type": "websocket.send", "text": json.dumps(event, separators=(",", ":"))})

    async def _write_loop(self) -> None:
        send = self.websocket.send
        try:
            while (item := await self._queue.get()) is not None:
                await send(item)
                if item["type"] == "websocket.close":
                    return
        except Exception:  # noqa: BLE001 - the socket went away; the reader notices and cleans up
            self.closed = True

    async def finish(self) -> None:
        """Let queued messages go out, then stop the writer (the server closes the socket afterwards)."""
        self.output.close()
        self._queue.put_nowait(None)
        await self._wait_writer()
        self.closed = True

    async def _wait_writer(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), 2.0)
        except (TimeoutError, Exception):  # noqa: BLE001
            self._writer.cancel()


class TwilioStream:
    """One Media Stream connection (already accepted and authenticated)."""

    def __init__(self, websocket: WebSocket, runtime: Runtime, config: StreamConfig) -> None:
        self.websocket = websocket
        self.runtime = runtime
        self.config = config
        self.peer = TwilioPeer(websocket, config, runtime.settings.max_outbound_messages)
        self.call: Call | None = None
        self.agent: Any = None
        self.stopped = False
        self._upsampler = Upsampler2x()  # not soxr: its stream mode releases audio in ~100 ms bursts
        self._tasks: set[asyncio.Task] = set()
        self.dropped: dict[str, int] = {}  # reason → count, for tests and debugging

    async def run(self) -> None:
        receive = self.websocket.receive
        try:
            while not self.stopped and not self.peer.closed:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    self._drop("binary frame")
                    continue
                await self.handle_text(text)
        except WebSocketDisconnect:
            pass
        except Exception:  # noqa: BLE001 - one broken stream must not affect others
            log.exception("Twilio stream %s failed", self.peer.stream_sid)
        finally:
            await self.shutdown()

    async def handle_text(self, text: str) -> None:
        if len(text) > MAX_EVENT_CHARS:
            return self._drop("oversized event")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return self._drop("malformed JSON")
        if not isinstance(data, dict):
            return self._drop("not an object")
        event = data.get("event")
        if event == "media":
            self.on_media(data)
        elif event == "mark":
            if self._ours(data):
                name = _field(data, "mark", "name")
                if isinstance(name, str):
                    self.peer.output.on_mark(name)
        elif event == "dtmf":
            self.on_dtmf(data)
        elif event == "start":
            await self.on_start(data)
        elif event == "stop":
            if self.peer.stream_sid is None or self._ours(data):
                log.info("Twilio stream %s stopped", self.peer.stream_sid)
                self.stopped = True
        elif event == "connected":
            log.debug("Twilio stream connected: protocol %s", data.get("protocol"))
        else:
            log.debug("Twilio stream %s: unknown event %.40r", self.peer.stream_sid, event)
            self._drop("unknown event", level=logging.DEBUG)

    # --- events -----------------------------------------------------------------------------------------------

    async def on_start(self, data: dict[str, Any]) -> None:
        if self.call is not None or self.peer.stream_sid is not None:
            return self._drop("second start")
        start = data.get("start") if isinstance(data.get("start"), dict) else {}
        stream_sid = start.get("streamSid") or data.get("streamSid")
        if not isinstance(stream_sid, str) or not stream_sid:
            return self._drop("start without streamSid", level=logging.WARNING)
        call_sid = start.get("callSid") if isinstance(start.get("callSid"), str) else ""
        raw_params = start.get("customParameters")
        params = {str(k): str(v) for k, v in raw_params.items()} if isinstance(raw_params, dict) else {}
        agent_name = params.get("agent") or self.config.agent
        instance = params.get("instance") or call_sid
        cfg = self.config
        if self.runtime.resolve(agent_name) != self.runtime.resolve(cfg.agent) or not instance:
            log.warning("Twilio stream %s for agent %.60r, instance %.60r: refused", stream_sid, agent_name, instance)
            return await self._reject("unknown agent or instance")
        if cfg.auth_token and not check_call_token(cfg.auth_token, cfg.agent, instance, call_sid, params.get("token")):
            log.warning("Twilio stream %s: bad or missing call token for instance %.60r", stream_sid, instance)
            return await self._reject("bad call token")
        self.peer.stream_sid = stream_sid
        agent = await self.runtime.acquire(cfg.agent, instance)
        if agent is None:
            return await self._reject("unknown agent")
        self.agent = agent
        query = {k: v for k, v in params.items() if k != "token"} | {"callSid": call_sid, "streamSid": stream_sid}
        self.call = Call(agent, self.peer, self.runtime.settings, query=query, call_id=call_sid[-12:] or None)
        log.info("Twilio call %s → %s/%s", call_sid, agent.name, instance)
        await self.call.handle_message(protocol.ClientMessage(type="start_call"))
        await asyncio.sleep(0)  # let the call start buffering: media that follows waits for the STT session

    def on_media(self, data: dict[str, Any]) -> None:
        call = self.call
        if call is None:
            return self._drop("media before start", level=logging.DEBUG)
        if not self._ours(data):
            return
        media = data.get("media")
        if not isinstance(media, dict):
            return self._drop("media without a media object")
        if media.get("track", "inbound") not in ("inbound", "inbound_track"):
            return self._drop("media on another track", level=logging.DEBUG)
        payload = media.get("payload")
        if not isinstance(payload, str) or not payload:
            return self._drop("media without a payload")
        try:
            mulaw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return self._drop("media payload is not base64")
        pcm = self._upsampler.process(g711.decode(mulaw))
        for i in range(0, len(pcm), MAX_PCM_PIECE):
            call.handle_audio(pcm[i : i + MAX_PCM_PIECE])

    def on_dtmf(self, data: dict[str, Any]) -> None:
        if self.call is None:
            return self._drop("dtmf before start")
        if not self._ours(data):
            return
        digit = _field(data, "dtmf", "digit")
        if not isinstance(digit, str) or len(digit) != 1 or digit not in DTMF_DIGITS:
            return self._drop("dtmf without a valid digit")
        handler = getattr(self.agent, "on_dtmf", None)
        if handler is not None:
            self._spawn(self._run_dtmf(handler, digit, self.call))

    async def _run_dtmf(self, handler, digit: str, call: Call) -> None:
        try:
            await maybe_await(handler(digit, call))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the user's hook may raise anything
            log.exception("on_dtmf(%r) failed on %s", digit, call.id)

    # --- teardown ---------------------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop or disconnect: end the call (cancelling a reply in flight and storing what was heard)."""
        call, self.call = self.call, None
        if call is not None:
            try:
                await call.close()
            except Exception:  # noqa: BLE001
                log.exception("closing call %s failed", call.id)
        for task in list(self._tasks):
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.agent is not None:
            self.runtime.release(self.agent)
            self.agent = None
        await self.peer.finish()

    async def _reject(self, reason: str) -> None:
        await self.peer.close(protocol.CLOSE_POLICY, reason)

    # --- helpers ----------------------------------------------------------------------------------------------

    def _ours(self, data: dict[str, Any]) -> bool:
        sid = data.get("streamSid")
        if sid is not None and sid != self.peer.stream_sid:
            self._drop("event for another streamSid", level=logging.WARNING)
            return False
        return True

    def _drop(self, reason: str, level: int = logging.INFO) -> None:
        count = self.dropped.get(reason, 0) + 1
        self.dropped[reason] = count
        if count <= 3 or count % 1000 == 0:
            log.log(level, "Twilio stream %s: dropped %s (%d so far)", self.peer.stream_sid, reason, count)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _field(data: dict[str, Any], obj: str, key: str) -> Any:
    inner = data.get(obj)
    return inner.get(key) if isinstance(inner, dict) else None


async def serve_twilio_stream(websocket: WebSocket, runtime: Runtime, config: StreamConfig) -> TwilioStream:
    """Serve one accepted (and authenticated) Media Stream socket until it ends."""
    stream = TwilioStream(websocket, runtime, config)
    await stream.run()
    return stream
