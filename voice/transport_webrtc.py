"""WebRTC transport (aiortc): browsers and other WebRTC peers reach the same agents, with the same behaviour, as
over the WebSocket — audio as Opus tracks, JSON messages over a data channel.

Signaling is one HTTP round trip, no trickle ICE::

    POST /agents/{agent}/{instance}/webrtc    {"sdp": "<offer>", "type": "offer", "start_call"?: bool}
      200 {"sdp": "<answer>", "type": "answer"}       all of the server's ICE candidates are in the answer
      400 {"detail": ...}  bad JSON, not an offer, SDP that cannot be parsed or has no audio/data channel
      404 {"detail": ...}  unknown agent
      503 {"detail": ...}  max_peers connections already open in this process (Retry-After: 5)
    GET  /agents/{agent}/{instance}/webrtc    {"iceServers": [...]}  the STUN/TURN servers, for the client's config

Query parameters of the POST reach the agent as ``call.query`` (``_pk`` becomes the call id), as on the WebSocket.

* **Audio in**: the client's microphone track (Opus, 48 kHz) is decoded, mixed to mono, resampled to 16 kHz
  (streaming soxr) and fed to the call. Only the first audio track is used.
* **Audio out**: the server adds one audio track (20 ms frames, 48 kHz, paced in real time, silence when idle).
  What was heard comes from the track itself, so barge-in stores exactly the heard text; no ``playback_ack`` is
  needed (acks are accepted and ignored).
* **Data channel** labelled ``voice`` (created by the client): the JSON messages of docs/protocol.md, both ways, one
  message per data-channel message (strings; binary messages are refused with ``bad_message``). When it opens the
  server sends ``welcome`` and ``status: idle``; the call starts with ``start_call`` as on the WebSocket — or at
  once when the channel opens if the offer said ``"start_call": true``. ``audio_config`` carries an extra
  ``"transport": "webrtc"``: the audio is on the track, no binary frames follow. When the server ends the
  connection (``call.hangup()``, abuse) it first sends ``{"type": "close", "code": 1000|1008, "reason": ...}`` — the
  WebSocket close code — then closes the peer connection.
* **Peer gone**: connection state ``failed``/``closed`` (a closed tab, ``pc.close()``), the data channel closing,
  no incoming audio frame for ``media_timeout`` seconds (when the client sends audio; ICE consent freshness catches
  data-only clients within ~30 s), or no connection ``connect_timeout`` seconds after the answer → the call ends,
  tracks stop, tasks are cancelled, the RTCPeerConnection is closed and the agent instance released.
* **ICE servers**: ``ice_servers=`` or env ``VOICE_ICE_SERVERS`` (JSON): a list of URLs or of
  ``{"urls", "username"?, "credential"?}``. Default none: host candidates only, which is enough on a LAN.

aiortc is an optional extra (``pip install 'voice[webrtc]'``), imported only when the routes are used; without it
:func:`mount_webrtc` mounts routes that answer 501 with the install hint and returns False.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from . import protocol
from .call import Call, Peer

if TYPE_CHECKING:
    from .agent import BaseAgent
    from .runtime import Runtime
    from .server import VoiceServer
    from .webrtc_media import AgentAudioTrack, WebRTCOutput

log = logging.getLogger("voice.webrtc")

INSTALL_HINT = "WebRTC needs aiortc: pip install 'voice[webrtc]'"
MAX_OFFER_BYTES = 64 * 1024
MAX_BUFFERED_BYTES = 4 * 1024 * 1024  # a client that does not read its data channel is dropped past this
MAX_PENDING_MESSAGES = 256  # messages queued before the data channel opens
CHANNEL_LABEL = "voice"


def aiortc_available() -> bool:
    try:
        import aiortc  # noqa: F401
    except ImportError:
        return False
    return True


def parse_ice_servers(value: Any) -> list[dict[str, Any]]:
    """Normalise ICE server config (a JSON string, a URL, or a list of URLs / ``{"urls", "username",
    "credential"}`` dicts) to a list of dicts in the browser's ``RTCIceServer`` shape. Raises ValueError."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"VOICE_ICE_SERVERS is not valid JSON: {exc}") from None
        else:
            value = [text]
    if isinstance(value, dict):
        value = [value]
    servers: list[dict[str, Any]] = []
    for item in value:
        if isinstance(item, str):
            item = {"urls": item}
        elif hasattr(item, "urls"):  # an aiortc RTCIceServer
            item = {"urls": item.urls, "username": item.username, "credential": item.credential}
        if not isinstance(item, dict) or not item.get("urls"):
            raise ValueError(f"an ICE server needs 'urls': {item!r}")
        urls = item["urls"]
        urls = [urls] if isinstance(urls, str) else list(urls)
        for url in urls:
            if not isinstance(url, str) or not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
                raise ValueError(f"not a STUN/TURN URL: {url!r}")
        server: dict[str, Any] = {"urls": urls if len(urls) > 1 else urls[0]}
        for key in ("username", "credential"):
            if item.get(key) is not None:
                server[key] = str(item[key])
        servers.append(server)
    return servers


@dataclass(frozen=True)
class WebRTCOptions:
    max_peers: int = 50  # concurrent peer connections per process; more → 503
    ice_servers: tuple[dict[str, Any], ...] = ()
    connect_timeout: float = 20.0  # answer sent but no connection after this → torn down
    media_timeout: float = 5.0  # incoming audio stopped for this long → the peer is gone
    close_grace: float = 1.0  # how long a closing message may take to leave


class OfferError(ValueError):
    """An offer that cannot be answered (→ HTTP 400)."""


class WebRTCPeer(Peer):
    """JSON over the ``voice`` data channel (queued until it opens); audio through :class:`WebRTCOutput`."""

    def __init__(self, session: WebRTCSession, output: WebRTCOutput) -> None:
        self.session = session
        self.output = output
        self.channel: Any = None
        self.closed = False
        self._pending: list[str] = []

    def send_json(self, message: dict[str, Any]) -> None:
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
            self.session.close_soon(protocol.CLOSE_POLICY, "not reading")
            return
        channel.send(text)

    def attach_channel(self, channel: Any) -> None:
        self.channel = channel
        pending, self._pending = self._pending, []
        for text in pending:
            channel.send(text)

    async def close(self, code: int = protocol.CLOSE_NORMAL, reason: str = "") -> None:
        await self.session.close(code, reason)


class WebRTCSession:
    """One peer connection: its Call, tracks, data channel and background tasks, and their teardown."""

    def __init__(self, gateway: WebRTCGateway, agent: BaseAgent, query: dict[str, str], auto_start: bool) -> None:
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

        from .webrtc_media import AgentAudioTrack, WebRTCOutput

        self.gateway = gateway
        self.agent = agent
        self.auto_start = auto_start
        self.created = time.monotonic()
        self.connected = False
        self.last_media: float | None = None  # monotonic time of the last incoming audio frame
        ice = [RTCIceServer(**server) for server in gateway.options.ice_servers]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice or None))
        self.output = WebRTCOutput()
        self.track: AgentAudioTrack = AgentAudioTrack(self.output)
        self.peer = WebRTCPeer(self, self.output)
        self.call = Call(agent, self.peer, gateway.runtime.settings, query=query, call_id=query.get("_pk"))
        self.reason = ""
        self._inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()
        self._reader: asyncio.Task | None = None
        self._close_task: asyncio.Task | None = None
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)

    # --- negotiation --------------------------------------------------------------------------------------------

    async def answer(self, sdp: str) -> str:
        """Apply the offer, add the agent's track, gather candidates; the answer SDP. Raises OfferError."""
        from aiortc import RTCSessionDescription

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
            self.pc.addTrack(self.track)
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:  # noqa: BLE001 - e.g. no codec in common
            raise OfferError(f"no answer to this offer: {type(exc).__name__}: {exc}"[:300]) from None
        if transceivers and transceivers[0].currentDirection in ("sendrecv", "sendonly"):
            self.output.attach()
        else:
            self.track.stop()  # the client receives no audio from us: writes play instantly
        self.call.send(protocol.welcome())  # both leave when the data channel opens
        self.call.send(protocol.status("idle"))
        self._spawn(self._watchdog())
        self._spawn(self._consume())
        return self.pc.localDescription.sdp

    # --- events -------------------------------------------------------------------------------------------------

    def _on_track(self, track: Any) -> None:
        if track.kind != "audio" or self._reader is not None:
            return
        from .webrtc_media import read_track

        self._reader = self._spawn(read_track(track, self.call.handle_audio, self._on_media))

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
            else:
                self.call.send_error("binary data channel messages are not accepted; audio goes on the track",
                                     "bad_message")

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
                await self.call.handle_text(text)
            except Exception:  # noqa: BLE001 - one bad message must not end the connection
                log.exception("message handling failed on %s", self.call.id)

    async def _watchdog(self) -> None:
        options = self.gateway.options
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            if not self.connected and now - self.created > options.connect_timeout:
                self.close_soon(None, "no connection")
                return
            if self.last_media is not None and now - self.last_media > options.media_timeout:
                self.close_soon(None, "no audio from the peer")
                return

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- teardown -----------------------------------------------------------------------------------------------

    def close_soon(self, code: int | None, reason: str) -> asyncio.Task:
        """Start the teardown (once); ``code``: tell the client first with a ``close`` message."""
        if self._close_task is None:
            self._close_task = asyncio.create_task(self._teardown(code, reason))
            self.gateway._closing.add(self._close_task)
            self._close_task.add_done_callback(self.gateway._closing.discard)
        return self._close_task

    async def close(self, code: int | None = protocol.CLOSE_NORMAL, reason: str = "") -> None:
        await asyncio.shield(self.close_soon(code, reason))

    async def _teardown(self, code: int | None, reason: str) -> None:
        self.reason = reason
        log.info("WebRTC %s closing: %s", self.call.id, reason)
        channel = self.peer.channel
        try:
            if code is not None and channel is not None and channel.readyState == "open":
                channel.send(json.dumps({"type": "close", "code": code, "reason": reason}))
                deadline = time.monotonic() + self.gateway.options.close_grace
                while channel.bufferedAmount and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.05)  # SCTP hands it to DTLS asynchronously
            self.peer.closed = True
            self.output.detach()  # ends any wait for playout
            self.track.stop()
            await self.call.close()
            current = asyncio.current_task()
            self._inbox.put_nowait(None)
            for task in list(self._tasks):
                if task is not current:
                    task.cancel()
            await asyncio.gather(*(t for t in self._tasks if t is not current), return_exceptions=True)
            await self.pc.close()
        except Exception:  # noqa: BLE001
            log.exception("WebRTC teardown of %s failed", self.call.id)
        finally:
            self.gateway._release(self)


class WebRTCGateway:
    """The WebRTC side of a server: options, the live sessions, and the offer → answer handler."""

    def __init__(self, runtime: Runtime, options: WebRTCOptions) -> None:
        self.runtime = runtime
        self.options = options
        self.sessions: set[WebRTCSession] = set()
        self._reserved = 0  # offers being answered: they count toward max_peers
        self._closing: set[asyncio.Task] = set()

    @property
    def peer_count(self) -> int:
        return len(self.sessions) + self._reserved

    async def handle_offer(self, agent_name: str, instance: str, body: bytes, query: dict[str, str]) -> dict:
        """The answer for one offer, or HTTPException 400/404/503."""
        sdp, auto_start = parse_offer(body)
        if self.runtime.resolve(agent_name) is None:
            raise HTTPException(404, f"unknown agent {agent_name[:60]!r}")
        if self.peer_count >= self.options.max_peers:
            raise HTTPException(503, f"too many WebRTC connections (max {self.options.max_peers})",
                                headers={"Retry-After": "5"})
        self._reserved += 1
        session: WebRTCSession | None = None
        try:
            agent = await self.runtime.acquire(agent_name, instance)
            if agent is None:  # unregistered meanwhile
                raise HTTPException(404, f"unknown agent {agent_name[:60]!r}")
            try:
                session = WebRTCSession(self, agent, query, auto_start)
            except BaseException:
                self.runtime.release(agent)
                raise
            self.sessions.add(session)
            answer = await session.answer(sdp)
            return {"sdp": answer, "type": "answer"}
        except OfferError as exc:
            if session is not None:
                await session.close(None, "bad offer")
            raise HTTPException(400, str(exc)) from None
        except BaseException:
            if session is not None:
                await session.close(None, "negotiation failed")
            raise
        finally:
            self._reserved -= 1

    def _release(self, session: WebRTCSession) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            self.runtime.release(session.agent)

    async def close_all(self) -> None:
        """End every WebRTC connection (server shutdown)."""
        await asyncio.gather(
            *(s.close(protocol.CLOSE_GOING_AWAY, "server shutting down") for s in list(self.sessions)),
            return_exceptions=True,
        )
        await asyncio.gather(*list(self._closing), return_exceptions=True)


def parse_offer(body: bytes) -> tuple[str, bool]:
    """(offer SDP, start the call when the channel opens) from a POST body, or HTTPException 400."""
    if len(body) > MAX_OFFER_BYTES:
        raise HTTPException(400, f"offer larger than {MAX_OFFER_BYTES} bytes")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise HTTPException(400, "the body must be JSON: {\"sdp\": ..., \"type\": \"offer\"}") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "the body must be a JSON object: {\"sdp\": ..., \"type\": \"offer\"}")
    if data.get("type") != "offer":
        raise HTTPException(400, "'type' must be \"offer\"")
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise HTTPException(400, "'sdp' must be a non-empty string")
    start = data.get("start_call", False)
    if not isinstance(start, bool):
        raise HTTPException(400, "'start_call' must be a boolean")
    return sdp, start


def _resolve_target(target: VoiceServer | FastAPI) -> tuple[VoiceServer, APIRouter]:
    from .server import VoiceServer

    if isinstance(target, VoiceServer):
        return target, target.router
    server = getattr(getattr(target, "state", None), "voice", None)
    if isinstance(target, FastAPI) and isinstance(server, VoiceServer):
        return server, target.router
    raise TypeError("mount_webrtc needs a VoiceServer, or an app made by voice.create_app")


def mount_webrtc(
    server: VoiceServer | FastAPI,
    *,
    max_peers: int | None = None,
    ice_servers: Iterable[Any] | str | None = None,
    connect_timeout: float = 20.0,
    media_timeout: float = 5.0,
) -> bool:
    """Add ``POST``/``GET /agents/{agent}/{instance}/webrtc`` (see the module doc) to ``server.router``.

    ``server``: a :class:`~voice.server.VoiceServer` (before ``server.router`` is included in an app) or an app
    made by :func:`voice.create_app`. ``max_peers``: concurrent peer connections in this process (default
    ``VOICE_WEBRTC_MAX_PEERS`` or 50). ``ice_servers``: STUN/TURN servers (default ``VOICE_ICE_SERVERS``, JSON).
    The gateway is kept as ``server.webrtc``; its connections are closed when the runtime stops.
    Returns False (routes answer 501) when aiortc is not installed.
    """
    voice_server, router = _resolve_target(server)
    if max_peers is None:
        max_peers = int(os.environ.get("VOICE_WEBRTC_MAX_PEERS") or 50)
    if max_peers < 1:
        raise ValueError("max_peers must be at least 1")
    if ice_servers is None:
        ice_servers = os.environ.get("VOICE_ICE_SERVERS")
    options = WebRTCOptions(
        max_peers=max_peers,
        ice_servers=tuple(parse_ice_servers(ice_servers)),
        connect_timeout=connect_timeout,
        media_timeout=media_timeout,
    )
    path = "/agents/{agent}/{instance}/webrtc"
    routes = APIRouter()
    if not aiortc_available():
        log.warning("WebRTC disabled: %s", INSTALL_HINT)

        @routes.api_route(path, methods=["GET", "POST"])
        async def webrtc_unavailable(agent: str, instance: str) -> JSONResponse:
            return JSONResponse({"detail": f"WebRTC is not available on this server ({INSTALL_HINT})"}, 501)

        router.include_router(routes)
        return False

    gateway = WebRTCGateway(voice_server.runtime, options)
    voice_server.webrtc = gateway  # type: ignore[attr-defined]
    _close_on_stop(voice_server.runtime, gateway)

    @routes.post(path)
    async def webrtc_offer(request: Request, agent: str, instance: str) -> dict:
        body = b""
        async for part in request.stream():
            body += part
            if len(body) > MAX_OFFER_BYTES:
                raise HTTPException(400, f"offer larger than {MAX_OFFER_BYTES} bytes")
        return await gateway.handle_offer(agent, instance, body, dict(request.query_params))

    @routes.get(path)
    async def webrtc_config(agent: str, instance: str) -> dict:
        if voice_server.runtime.resolve(agent) is None:
            raise HTTPException(404, f"unknown agent {agent[:60]!r}")
        return {"iceServers": list(options.ice_servers)}

    router.include_router(routes)
    return True


def _close_on_stop(runtime: Runtime, gateway: WebRTCGateway) -> None:
    """Close the WebRTC connections before the runtime (storage, providers) stops."""
    stop = runtime.stop

    async def stop_with_webrtc() -> None:
        await gateway.close_all()
        await stop()

    runtime.stop = stop_with_webrtc  # type: ignore[method-assign]
