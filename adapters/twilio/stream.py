"""The Twilio Media Stream wire: Twilio's events ↔ the shared connection session, like any other transport.

Lifecycle of one stream (reference §1.3): ``connected`` → ``start`` (streamSid, callSid, customParameters) →
``media``/``dtmf``/``mark`` … → ``stop`` (or the socket just closes). On ``start`` the agent instance named by our
TwiML's parameters is opened through :class:`~voice.transports.session.Connection` and the call starts; inbound
μ-law 8 kHz is decoded, up-sampled to 16 kHz (a low-latency streaming FIR per call) and fed to the session; ``dtmf``
goes to the call (``on_dtmf``); mark echoes go to the :class:`~adapters.twilio.output.TwilioOutput`. Anything
malformed is logged and dropped — a bad frame never ends a phone call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from voice import protocol
from voice.audio import g711
from voice.audio.upsample import Upsampler2x
from voice.engine import Peer, Runtime
from voice.transports import Connection, OrderedWriter

from . import events
from .output import TwilioOutput
from .rest import end_call
from .signature import check_call_token

log = logging.getLogger("voice.twilio")

MAX_PCM_PIECE = 8000  # bytes of 16 kHz PCM handed to the call at once (0.25 s)


@dataclass(frozen=True)
class StreamConfig:
    """How streams are served (set by :func:`~adapters.twilio.routes.mount_twilio`)."""

    agent: str  # the only agent this endpoint serves
    auth_token: str | None = None  # when set, ``start`` must carry the per-call token from our TwiML
    lead: float = 0.16  # seconds of agent audio kept queued at Twilio
    mark_every: float = 0.1  # seconds between marks
    #: Twilio's REST API. When set (with ``auth_token``), our TwiML goes on after the stream (a ``<Redirect>`` that
    #: moves the call to another process when this one drains or dies), so hanging up completes the call there;
    #: None: closing the stream hangs up
    api_url: str | None = None


class TwilioPeer(Peer):
    """Media, marks and clears leave through one ordered writer. Engine messages meant for browser clients
    (transcripts, status, metrics) have no place on a phone line: logged at debug level."""

    transport = "twilio"  # the metrics label

    def __init__(self, websocket: WebSocket, config: StreamConfig, max_queue: int, max_bytes: int) -> None:
        self.config = config
        self.stream_sid: str | None = None
        #: the call's ids, once its ``start`` carried our token (only a verified call is ever hung up)
        self.call_sid: str | None = None
        self.account_sid: str | None = None
        self.writer = OrderedWriter(websocket.send, max_queue, max_bytes, transport=self.transport)
        self.output: TwilioOutput = TwilioOutput(self, lead=config.lead, mark_every=config.mark_every)

    @property
    def closed(self) -> bool:
        """Whether nothing more can be sent."""
        return self.writer.close_code is not None or self.writer.done

    def send_json(self, message: dict[str, Any]) -> None:
        """Browser protocol messages: logged, not sent."""
        if message.get("type") == "error":
            log.info("call error on stream %s: %s", self.stream_sid, message.get("message"))
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("stream %s: %.200s", self.stream_sid, message)

    async def close(self, code: int = protocol.CLOSE_NORMAL, reason: str = "") -> None:
        """Close the socket. 1001 (this process is going away): Twilio follows our TwiML's ``<Redirect>`` and the
        call goes on elsewhere. Any other code ends the call: through the REST API when our TwiML goes on after the
        stream, else closing the stream is what hangs up."""
        if code != protocol.CLOSE_GOING_AWAY:
            await self.hang_up()
        self.output.close()
        self.writer.close(code, reason)
        await self.writer.finish()

    async def hang_up(self) -> None:
        """Complete the call through Twilio's REST API (once; only when our TwiML goes on after the stream)."""
        cfg, call_sid, account_sid = self.config, self.call_sid, self.account_sid
        if cfg.api_url and cfg.auth_token and call_sid and account_sid:
            self.call_sid = None
            if await end_call(cfg.api_url, account_sid, cfg.auth_token, call_sid):
                log.info("Twilio call %s ended", call_sid)

    # --- the output's sink ----------------------------------------------------------------------------------

    def send_media(self, mulaw: bytes) -> None:
        """Agent audio."""
        if self.stream_sid is not None:
            self.writer.send_json(events.media(self.stream_sid, mulaw), compact=True)

    def send_mark(self, name: str) -> None:
        """A mark after the audio sent so far."""
        if self.stream_sid is not None:
            self.writer.send_json(events.mark(self.stream_sid, name), compact=True)

    def send_clear(self) -> None:
        """Drop what Twilio has buffered."""
        if self.stream_sid is not None:
            self.writer.send_json(events.clear(self.stream_sid), compact=True)


class TwilioStream:
    """One Media Stream connection (already accepted and authenticated)."""

    def __init__(self, websocket: WebSocket, runtime: Runtime, config: StreamConfig) -> None:
        self.websocket = websocket
        self.runtime = runtime
        self.config = config
        settings = runtime.settings
        self.peer = TwilioPeer(websocket, config, settings.max_outbound_messages, settings.max_outbound_bytes)
        self.connection: Connection | None = None
        self.stopped = False
        self._upsampler = Upsampler2x()  # not soxr: its stream mode releases audio in ~100 ms bursts
        self.dropped: dict[str, int] = {}  # reason → count, for tests and debugging

    async def run(self) -> None:
        """Read events until ``stop`` or the socket closes, then end the call."""
        try:
            while not self.stopped and not self.peer.closed:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    self._drop("binary frame")
                    continue
                await self.handle(events.parse(text))
        except WebSocketDisconnect:
            pass
        except Exception:
            log.exception("Twilio stream %s failed", self.peer.stream_sid)
        finally:
            if self.connection is not None:
                await self.connection.close()
            self.peer.output.close()
            await self.peer.writer.finish()

    async def handle(self, event: events.TwilioEvent | events.Dropped) -> None:
        """One parsed event."""
        if isinstance(event, events.Dropped):
            return self._drop(event.reason, logging.DEBUG if event.quiet else logging.INFO)
        if isinstance(event, events.Start):
            return await self._start(event)
        if isinstance(event, events.Connected):
            return log.debug("Twilio stream connected: protocol %s", event.protocol)
        if isinstance(event, events.Stop):
            if self.peer.stream_sid is None or self._ours(event.stream_sid):
                log.info("Twilio stream %s stopped", self.peer.stream_sid)
                self.stopped = True
            return None
        connection = self.connection
        if connection is None or connection.call is None:
            return self._drop(f"{type(event).__name__.lower()} before start", logging.DEBUG)
        if not self._ours(event.stream_sid):
            return None
        if isinstance(event, events.Media):
            pcm = self._upsampler.process(g711.decode(event.mulaw))
            for i in range(0, len(pcm), MAX_PCM_PIECE):
                connection.receive_audio(pcm[i : i + MAX_PCM_PIECE])
        elif isinstance(event, events.Mark):
            self.peer.output.on_mark(event.name)
        elif isinstance(event, events.Dtmf):
            connection.call.dtmf(event.digit)
        return None

    async def _start(self, start: events.Start) -> None:
        if self.connection is not None or self.peer.stream_sid is not None:
            return self._drop("second start")
        cfg, params = self.config, start.parameters
        agent_name = params.get("agent") or cfg.agent
        instance = params.get("instance") or start.call_sid
        if self.runtime.resolve(agent_name) != self.runtime.resolve(cfg.agent) or not instance:
            log.warning("Twilio stream %s for agent %.60r, instance %.60r: refused", start.stream_sid, agent_name,
                        instance)
            return await self.peer.close(protocol.CLOSE_POLICY, "unknown agent or instance")
        if cfg.auth_token and not check_call_token(cfg.auth_token, cfg.agent, instance, start.call_sid,
                                                   params.get("token")):
            log.warning("Twilio stream %s: bad or missing call token for instance %.60r", start.stream_sid, instance)
            return await self.peer.close(protocol.CLOSE_POLICY, "bad call token")
        self.peer.stream_sid = start.stream_sid
        self.peer.call_sid, self.peer.account_sid = start.call_sid, start.account_sid
        query = params | {"callSid": start.call_sid, "streamSid": start.stream_sid}
        self.connection = Connection(self.runtime, self.peer, query=query, call_id=start.call_sid[-12:] or None)
        call = await self.connection.open(cfg.agent, instance, greet=False)
        if call is not None:
            log.info("Twilio call %s → %s/%s", start.call_sid, call.agent.name, instance)
            call.start()  # media that follows is buffered while the STT session opens
        return None

    def _ours(self, sid: str | None) -> bool:
        if sid is not None and sid != self.peer.stream_sid:
            self._drop("event for another streamSid", level=logging.WARNING)
            return False
        return True

    def _drop(self, reason: str, level: int = logging.INFO) -> None:
        count = self.dropped.get(reason, 0) + 1
        self.dropped[reason] = count
        if count <= 3 or count % 1000 == 0:
            log.log(level, "Twilio stream %s: dropped %s (%d so far)", self.peer.stream_sid, reason, count)


async def serve_twilio_stream(websocket: WebSocket, runtime: Runtime, config: StreamConfig) -> TwilioStream:
    """Serve one accepted (and authenticated) Media Stream socket until it ends."""
    stream = TwilioStream(websocket, runtime, config)
    await stream.run()
    return stream
