"""WebRTC configuration and offer parsing: pure values, importable without aiortc."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

INSTALL_HINT = "WebRTC needs aiortc: pip install 'voice[webrtc]'"
MAX_OFFER_BYTES = 64 * 1024


def aiortc_available() -> bool:
    """Whether the optional ``aiortc`` package is installed."""
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
    """How WebRTC peers are served."""
    max_peers: int = 50  # concurrent peer connections per process; more → 503
    ice_servers: tuple[dict[str, Any], ...] = ()
    connect_timeout: float = 20.0  # answer sent but no connection after this → torn down
    media_timeout: float = 5.0  # incoming audio stopped for this long → the peer is gone
    close_grace: float = 1.0  # how long a closing message may take to leave
    direct_opus: bool = True  # encode/decode Opus ourselves (codec.py); False: aiortc's codec path
    caller_packet_ms: int = 40  # the Opus packet length asked of the caller (a=ptime; direct path); 0: theirs


class OfferError(ValueError):
    """An offer that cannot be answered (→ HTTP 400)."""


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
