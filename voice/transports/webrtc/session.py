"""One WebRTC peer connection: the agent's track, the ``voice`` data channel, the caller's track, and a teardown that
leaves nothing behind. The call itself is the shared :class:`~voice.transports.session.Connection`'s. Needs aiortc;
imported when the first offer arrives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from ... import observability, protocol
from ..._aio import TaskSet
from ...agent import BaseAgent
from ...engine import Call, Peer, Runtime
from ..session import Connection
from .codec import (
    DirectOpusInput,
    OpusAgentTrack,
    OpusJitterTap,
    OpusOutput,
    ask_caller_for,
    available,
    install_jitter,
    negotiated_opus,
    opus_payload_type,
    tap_receiver,
)
from .media import AgentAudioTrack, WebRTCOutput, read_track
from .options import OfferError, WebRTCOptions

log = logging.getLogger("voice.webrtc")

MAX_BUFFERED_BYTES = 4 * 1024 * 1024  # a client that does not read its data channel is dropped past this
MAX_PENDING_MESSAGES = 256  # messages queued before the data channel opens
CHANNEL_LABEL = "voice"


class WebRTCPeer(Peer):
    """JSON over the ``voice`` data channel (queued until it opens); audio through :class:`WebRTCOutput`."""

    transport = "webrtc"  # the metrics label

    def __init__(self, session: WebRTCSession, output: WebRTCOutput) -> None:
        self.session = session
        self.output = output
        self.channel: Any = None
        self.closed = False
        self._pending: list[str] = []

    def send_json(self, message: dict[str, Any]) -> None:
        """Send on the data channel, or queue until it opens."""
        if self.closed:
            return
        if message.get("type") == "audio_config":
            message = {**message, "transport": "webrtc"}
        text = json.dumps(message)
        channel = self.channel
        if channel is None or channel.readyState != "open":
            if len(self._pending) < MAX_PENDING_MESSAGES:
                self._pending.append(text)
            return
        if channel.bufferedAmount > MAX_BUFFERED_BYTES:
            log.warning("closing a WebRTC client that does not read its data channel")
            observability.slow_client_closed(self.transport)
            self.session.close_soon(protocol.CLOSE_POLICY, "not reading")
            return
        channel.send(text)

    def attach_channel(self, channel: Any) -> None:
        """The data channel opened: send what was queued."""
        self.channel = channel
        pending, self._pending = self._pending, []
        for text in pending:
            channel.send(text)

    async def close(self, code: int = protocol.CLOSE_NORMAL, reason: str = "") -> None:
        """Tell the client (a ``close`` message), then tear the peer connection down."""
        await self.session.close(code, reason)


class WebRTCSession:
    """One peer connection. ``on_closing(session, task)`` is told when its teardown starts."""

    def __init__(
        self,
        runtime: Runtime,
        options: WebRTCOptions,
        query: Mapping[str, str],
        auto_start: bool,
        principal: Any,
        on_closing: Callable[[WebRTCSession, asyncio.Task[None]], None],
    ) -> None:
        self.options = options
        self.auto_start = auto_start
        self.created = time.monotonic()
        self.connected = False
        self.last_media: float | None = None  # monotonic time of the last incoming audio frame
        ice = [RTCIceServer(**server) for server in options.ice_servers]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice or None))
        # our own Opus path (codec.py) unless turned off or libopus is missing: aiortc's otherwise
        self.direct_opus = options.direct_opus and available()
        if self.direct_opus:
            self.output: WebRTCOutput = OpusOutput()
            self.track: AgentAudioTrack = OpusAgentTrack(self.output)
        else:
            self.output = WebRTCOutput()
            self.track = AgentAudioTrack(self.output)
        self.audio_in: DirectOpusInput | None = None  # the caller's Opus, decoded without aiortc's decoder
        self.jitter: OpusJitterTap | None = None  # ... and put in order without aiortc's jitter buffer
        self.peer = WebRTCPeer(self, self.output)
        self.connection = Connection(runtime, self.peer, query=query, principal=principal)
        self.reason = ""
        self._on_closing = on_closing
        self._inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._tasks = TaskSet("webrtc session")
        self._reader: asyncio.Task[None] | None = None
        self._close_task: asyncio.Task[None] | None = None
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)

    @property
    def call(self) -> Call:
        """The call on this peer connection (after :meth:`open`)."""
        assert self.connection.call is not None
        return self.connection.call

    @property
    def agent(self) -> BaseAgent:
        """The agent instance (after :meth:`open`)."""
        assert self.connection.agent is not None
        return self.connection.agent

    @property
    def id(self) -> str:
        """The call's id."""
        return self.connection.call.id if self.connection.call is not None else "?"

    async def open(self, agent_name: str, instance: str) -> bool:
        """Acquire the agent instance and create the call; False for an unknown agent."""
        return await self.connection.open(agent_name, instance) is not None

    # --- negotiation --------------------------------------------------------------------------------------------

    async def answer(self, sdp: str) -> str:
        """Apply the offer, add the agent's track, gather candidates; the answer SDP. Raises OfferError."""
        if "m=audio" not in sdp and "m=application" not in sdp:
            raise OfferError("the offer has no audio track and no data channel")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # noqa: BLE001 - aiortc raises ValueError, InvalidStateError, KeyError, ...
            raise OfferError(f"the offer could not be applied: {type(exc).__name__}: {exc}"[:300]) from None
        transceivers = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        if not transceivers and self.pc.sctp is None:
            raise OfferError("the offer has no audio track and no data channel")
        if transceivers:
            if self.direct_opus:
                self.audio_in = tap_receiver(transceivers[0].receiver, self.connection.receive_audio, self._on_media)
            self.pc.addTrack(self.track)
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:  # noqa: BLE001 - e.g. no codec in common
            raise OfferError(f"no answer to this offer: {type(exc).__name__}: {exc}"[:300]) from None
        answer = str(self.pc.localDescription.sdp)
        pt = opus_payload_type(answer) if negotiated_opus(answer) else None
        if isinstance(self.track, OpusAgentTrack) and pt is not None:
            self.track.use_opus()
        if self.audio_in is not None and pt is not None:
            # the caller's packets in order without aiortc's 4-packet hold; then ask for fewer, longer ones
            self.jitter = install_jitter(transceivers[0].receiver, self.audio_in, pt)
            if self.jitter is not None:
                answer = ask_caller_for(answer, self.options.caller_packet_ms)
        if transceivers and transceivers[0].currentDirection in ("sendrecv", "sendonly"):
            self.output.attach()
        else:
            self.track.stop()  # the client receives no audio from us: writes play instantly
        self._tasks.spawn(self._watchdog())
        self._tasks.spawn(self._consume())
        return answer

    # --- events -------------------------------------------------------------------------------------------------

    def _on_track(self, track: Any) -> None:
        if track.kind != "audio" or self._reader is not None:
            return
        self._reader = self._tasks.spawn(read_track(track, self.connection.receive_audio, self._on_media))

    def _on_media(self) -> None:
        self.last_media = time.monotonic()

    def _on_datachannel(self, channel: Any) -> None:
        if channel.label != CHANNEL_LABEL or self.peer.channel is not None:
            log.info("ignoring data channel %.40r", channel.label)
            return

        @channel.on("message")
        def on_message(message: Any) -> None:
            if isinstance(message, str):
                self._inbox.put_nowait(message)
            elif self.connection.call is not None:
                self.connection.call.send_error(
                    "binary data channel messages are not accepted; audio goes on the track", "bad_message")

        @channel.on("close")
        def on_close() -> None:
            self.close_soon(None, "data channel closed")

        def opened() -> None:
            self.peer.attach_channel(channel)
            if self.auto_start:
                self._inbox.put_nowait(json.dumps({"type": "start_call"}))

        if channel.readyState == "open":
            opened()
        else:
            channel.once("open", opened)

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.connected = True
        elif state in ("failed", "closed"):
            self.close_soon(None, f"connection {state}")

    # --- background tasks ---------------------------------------------------------------------------------------

    async def _consume(self) -> None:
        """Client messages, strictly in order (as the WebSocket reads them)."""
        while (text := await self._inbox.get()) is not None:
            try:
                await self.connection.receive_text(text)
            except Exception:
                log.exception("message handling failed on %s", self.id)

    async def _watchdog(self) -> None:
        options = self.options
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            if not self.connected and now - self.created > options.connect_timeout:
                self.close_soon(None, "no connection")
                return
            if self.last_media is not None and now - self.last_media > options.media_timeout:
                self.close_soon(None, "no audio from the peer")
                return

    # --- teardown -----------------------------------------------------------------------------------------------

    def close_soon(self, code: int | None, reason: str) -> asyncio.Task[None]:
        """Start the teardown (once); ``code``: tell the client first with a ``close`` message."""
        if self._close_task is None:
            self._close_task = asyncio.create_task(self._teardown(code, reason))
            self._on_closing(self, self._close_task)
        return self._close_task

    async def close(self, code: int | None = protocol.CLOSE_NORMAL, reason: str = "") -> None:
        """Tear down and wait for it."""
        await asyncio.shield(self.close_soon(code, reason))

    async def _teardown(self, code: int | None, reason: str) -> None:
        self.reason = reason
        log.info("WebRTC %s closing: %s", self.id, reason)
        channel = self.peer.channel
        try:
            if code is not None and channel is not None and channel.readyState == "open":
                channel.send(json.dumps({"type": "close", "code": code, "reason": reason}))
                deadline = time.monotonic() + self.options.close_grace
                while channel.bufferedAmount and time.monotonic() < deadline:  # noqa: ASYNC110 - aiortc has no event
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.05)  # SCTP hands it to DTLS asynchronously
            self.peer.closed = True
            self.output.detach()  # ends any wait for playout
            self.track.stop()
            await self.connection.close()
            self._inbox.put_nowait(None)
            await self._tasks.cancel_all()
            await self.pc.close()
        except Exception:
            log.exception("WebRTC teardown of %s failed", self.id)
