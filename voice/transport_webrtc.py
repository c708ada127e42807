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

* **Audio in**: the client's microphone track (Opus) is decoded by libopus straight to 16 kHz mono and fed to the
  call (:mod:`voice.webrtc_codec`); with ``direct_opus=False`` aiortc decodes it to 48 kHz stereo and we mix down
  and resample. Only the first audio track is used.
* **Audio out**: the server adds one audio track (48 kHz, paced in real time): mono Opus, 64 kbps, 60 ms packets,
  encoded once, nothing sent while the agent is silent (``direct_opus=False``: aiortc encodes 20 ms stereo
  frames, silence included). What was heard comes from the track itself, so barge-in stores exactly the heard
  text; no ``playback_ack`` is needed (acks are accepted and ignored).
* **Data channel** labelled ``voice`` (created by the client): the JSON messages of docs/protocol.md, both ways, one
  message per data-channel message (strings; binary messages are refused with ``bad_message``). When it opens the
  server sends ``welcome`` and ``status: idle``; the call starts with ``start_call`` as on the WebSocket — or at
  once when the channel opens if the offer said ``"start_call": true``. ``audio_config`` carries an extra
  ``"transport": "webrtc"``: the audio is on the track, no binary frames follow. When the server ends the
  connection (``call.hangup()``, abuse) it first sends ``{"type": "close", "code": 1000|1008, "reason": ...}`` — the
  WebSocket close code — then closes the peer connection.
* **Peer gone**: connection state ``failed``/``closed`` (a closed tab, ``pc.close()``), the data channel closing,
  no incoming audio frame for ``media_timeout`` seconds once audio has flowed (a browser sends packets even for
  a muted track; ICE consent freshness catches clients that never sent audio within ~30 s), or no connection ``connect_timeout`` seconds after the answer → the call ends,
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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from . import protocol
from .gate import Refusal

if TYPE_CHECKING:
    from .runtime import Runtime
    from .server import VoiceServer
    from .webrtc_session import WebRTCSession

log = logging.getLogger("voice.webrtc")

INSTALL_HINT = "WebRTC needs aiortc: pip install 'voice[webrtc]'"
MAX_OFFER_BYTES = 64 * 1024


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
    max_peers: int = 25  # concurrent peer connections per process; more → 503
    ice_servers: tuple[dict[str, Any], ...] = ()
    connect_timeout: float = 20.0  # answer sent but no connection after this → torn down
    media_timeout: float = 5.0  # incoming audio stopped for this long → the peer is gone
    close_grace: float = 1.0  # how long a closing message may take to leave
    direct_opus: bool = True  # encode/decode Opus ourselves (voice/webrtc_codec.py); False: aiortc's codec path


class OfferError(ValueError):
    """An offer that cannot be answered (→ HTTP 400)."""


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

    async def handle_offer(
        self, agent_name: str, instance: str, body: bytes, query: dict[str, str], principal: Any = None
    ) -> dict:
        """The answer for one offer, or HTTPException 400/404/503."""
        sdp, auto_start = parse_offer(body)
        if self.runtime.resolve(agent_name) is None:
            raise HTTPException(404, f"unknown agent {agent_name[:60]!r}")
        if self.peer_count >= self.options.max_peers:
            raise HTTPException(503, f"too many WebRTC connections (max {self.options.max_peers})",
                                headers={"Retry-After": "5"})
        self._reserved += 1
        from .webrtc_session import WebRTCSession

        session: WebRTCSession | None = None
        try:
            agent = await self.runtime.acquire(agent_name, instance)
            if agent is None:  # unregistered meanwhile
                raise HTTPException(404, f"unknown agent {agent_name[:60]!r}")
            try:
                session = WebRTCSession(self, agent, query, auto_start, principal)
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


def mount_webrtc(
    server: VoiceServer | FastAPI,
    *,
    max_peers: int | None = None,
    ice_servers: Iterable[Any] | str | None = None,
    connect_timeout: float = 20.0,
    media_timeout: float = 5.0,
    direct_opus: bool | None = None,
) -> bool:
    """Add ``POST``/``GET /agents/{agent}/{instance}/webrtc`` (see the module doc) to ``server.router``.

    ``server``: a :class:`~voice.server.VoiceServer` (before ``server.router`` is included in an app) or an app
    made by :func:`voice.create_app`. ``max_peers``: concurrent peer connections in this process (default
    ``VOICE_WEBRTC_MAX_PEERS`` or 25, about what one core carries: see BENCHMARKS.md). ``ice_servers``: STUN/TURN
    servers (default ``VOICE_ICE_SERVERS``, JSON). ``direct_opus``: encode the agent's voice once as mono Opus and
    decode the caller's straight to 16 kHz with libopus, bypassing aiortc's codecs (default ``VOICE_WEBRTC_DIRECT_OPUS``
    or on; ``0`` turns it off).
    The gateway is kept as ``server.webrtc``; its connections are closed when the runtime stops.
    Returns False (routes answer 501) when aiortc is not installed.
    """
    from .server import mount_target  # the server module imports this one

    voice_server, router = mount_target(server, "mount_webrtc")
    if max_peers is None:
        max_peers = int(os.environ.get("VOICE_WEBRTC_MAX_PEERS") or 25)
    if max_peers < 1:
        raise ValueError("max_peers must be at least 1")
    if ice_servers is None:
        ice_servers = os.environ.get("VOICE_ICE_SERVERS")
    if direct_opus is None:
        direct_opus = os.environ.get("VOICE_WEBRTC_DIRECT_OPUS", "1").strip().lower() not in ("0", "false", "no", "off")
    options = WebRTCOptions(
        max_peers=max_peers,
        direct_opus=direct_opus,
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

        _include_first(router, routes)
        return False

    gateway = WebRTCGateway(voice_server.runtime, options)
    voice_server.webrtc = gateway  # type: ignore[attr-defined]
    _close_on_stop(voice_server.runtime, gateway)

    gate = voice_server.gate

    async def admit(request: Request, agent: str, instance: str) -> Any:
        """The same authorization and Origin check as the WebSocket, before any SDP is looked at."""
        try:
            return await gate.check(request, agent, instance, browser_origin=True)
        except Refusal as refusal:
            raise HTTPException(refusal.status, refusal.message) from None

    @routes.post(path)
    async def webrtc_offer(request: Request, agent: str, instance: str) -> dict:
        principal = await admit(request, agent, instance)
        if gate.draining:
            raise HTTPException(503, "server is shutting down")
        body = b""
        async for part in request.stream():
            body += part
            if len(body) > MAX_OFFER_BYTES:
                raise HTTPException(400, f"offer larger than {MAX_OFFER_BYTES} bytes")
        query = dict(request.query_params)
        query.pop("token", None)  # a credential, not a parameter for the agent
        return await gateway.handle_offer(agent, instance, body, query, principal)

    @routes.get(path)
    async def webrtc_config(request: Request, agent: str, instance: str) -> dict:
        await admit(request, agent, instance)
        if voice_server.runtime.resolve(agent) is None:
            raise HTTPException(404, f"unknown agent {agent[:60]!r}")
        return {"iceServers": list(options.ice_servers)}

    _include_first(router, routes)
    return True


def _include_first(router: APIRouter, routes: APIRouter) -> None:
    """Add ``routes`` ahead of existing ones, so a static files mount at "/" (``create_app(static_dir=...)``)
    cannot shadow them when this runs after it."""
    before = len(router.routes)
    router.include_router(routes)
    added = router.routes[before:]
    del router.routes[before:]
    router.routes[0:0] = added


def _close_on_stop(runtime: Runtime, gateway: WebRTCGateway) -> None:
    """Close the WebRTC connections before the runtime (storage, providers) stops."""
    stop = runtime.stop

    async def stop_with_webrtc() -> None:
        await gateway.close_all()
        await stop()

    runtime.stop = stop_with_webrtc  # type: ignore[method-assign]
