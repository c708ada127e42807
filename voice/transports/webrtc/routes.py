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
  no incoming audio frame for ``media_timeout`` seconds once audio has flowed (a browser sends packets even for
  a muted track; ICE consent freshness catches clients that never sent audio within ~30 s), or no connection
  ``connect_timeout`` seconds after the answer → the call ends,
  tracks stop, tasks are cancelled, the RTCPeerConnection is closed and the agent instance released.
* **ICE servers**: ``ice_servers=`` or env ``VOICE_ICE_SERVERS`` (JSON): a list of URLs or of
  ``{"urls", "username"?, "credential"?}``. Default none: host candidates only, which is enough on a LAN.

aiortc is an optional extra (``pip install 'voice[webrtc]'``), imported only when a peer connects; without it
:func:`mount_webrtc` mounts routes that answer 501 with the install hint and returns False.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from ..gate import Refusal
from ..mount import include_first, mount_target
from ..session import agent_query
from .gateway import WebRTCGateway
from .options import INSTALL_HINT, MAX_OFFER_BYTES, WebRTCOptions, aiortc_available, parse_ice_servers

log = logging.getLogger("voice.webrtc")


def mount_webrtc(
    server: Any,
    *,
    max_peers: int | None = None,
    ice_servers: Iterable[Any] | str | None = None,
    connect_timeout: float = 20.0,
    media_timeout: float = 5.0,
    direct_opus: bool | None = None,
    caller_packet_ms: int | None = None,
) -> bool:
    """Add ``POST``/``GET /agents/{agent}/{instance}/webrtc`` (see the module doc) to ``server.router``.

    ``server``: a :class:`~voice.server.VoiceServer` (before ``server.router`` is included in an app) or an app
    made by :func:`voice.create_app`. ``max_peers``: concurrent peer connections in this process (default
    ``VOICE_WEBRTC_MAX_PEERS`` or 50, what one core carries with headroom: see BENCHMARKS.md). ``ice_servers``:
    STUN/TURN servers (default ``VOICE_ICE_SERVERS``, JSON). ``direct_opus``: encode the agent's voice once as
    mono Opus and decode the caller's straight to 16 kHz with libopus, bypassing aiortc's codecs (default
    ``VOICE_WEBRTC_DIRECT_OPUS`` or on; ``0`` turns it off). ``caller_packet_ms``: with it, the Opus packet length
    asked of the caller (default ``VOICE_WEBRTC_PACKET_MS`` or 40: half the per-packet work of 20 ms for 20 ms more
    packetization, which the jitter buffer's shorter hold more than repays; 20 for the lowest latency, 60 for the
    least CPU, 0 to leave the caller's choice).
    The gateway is kept as ``server.webrtc``; its connections are closed when the runtime stops.
    Returns False (routes answer 501) when aiortc is not installed.
    """
    voice_server, router = mount_target(server, "mount_webrtc")
    if max_peers is None:
        max_peers = int(os.environ.get("VOICE_WEBRTC_MAX_PEERS") or 50)
    if max_peers < 1:
        raise ValueError("max_peers must be at least 1")
    if ice_servers is None:
        ice_servers = os.environ.get("VOICE_ICE_SERVERS")
    if direct_opus is None:
        direct_opus = os.environ.get("VOICE_WEBRTC_DIRECT_OPUS", "1").strip().lower() not in ("0", "false", "no", "off")
    if caller_packet_ms is None:
        caller_packet_ms = int(os.environ.get("VOICE_WEBRTC_PACKET_MS") or 40)
    if caller_packet_ms not in (0, 10, 20, 40, 60):
        raise ValueError("caller_packet_ms must be 0 (the caller's choice) or 10, 20, 40 or 60")
    options = WebRTCOptions(
        max_peers=max_peers,
        direct_opus=direct_opus,
        caller_packet_ms=caller_packet_ms,
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

        include_first(router, routes)
        return False

    gateway = WebRTCGateway(voice_server.runtime, options)
    voice_server.webrtc = gateway  # type: ignore[attr-defined]  # for shutdown and tests
    voice_server.runtime.on_stop(gateway.close_all)  # before the store and providers go

    gate = voice_server.gate

    async def admit(request: Request, agent: str, instance: str) -> Any:
        """The same authorization and Origin check as the WebSocket, before any SDP is looked at."""
        try:
            return await gate.check(request, agent, instance, browser_origin=True)
        except Refusal as refusal:
            raise HTTPException(refusal.status, refusal.message) from None

    @routes.post(path)
    async def webrtc_offer(request: Request, agent: str, instance: str) -> dict[str, str]:
        principal = await admit(request, agent, instance)
        if gate.draining:
            raise HTTPException(503, "server is shutting down")
        body = b""
        async for part in request.stream():
            body += part
            if len(body) > MAX_OFFER_BYTES:
                raise HTTPException(400, f"offer larger than {MAX_OFFER_BYTES} bytes")
        return await gateway.handle_offer(agent, instance, body, agent_query(request.query_params), principal)

    @routes.get(path)
    async def webrtc_config(request: Request, agent: str, instance: str) -> dict[str, Any]:
        await admit(request, agent, instance)
        if voice_server.runtime.resolve(agent) is None:
            raise HTTPException(404, f"unknown agent {agent[:60]!r}")
        return {"iceServers": list(options.ice_servers)}

    include_first(router, routes)
    return True
