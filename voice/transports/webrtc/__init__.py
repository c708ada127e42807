"""The WebRTC transport (aiortc): signaling routes (:mod:`.routes`), the server's peer connections
(:mod:`.gateway`), one peer connection (:mod:`.session`) and its audio (:mod:`.media`). aiortc is imported only when a
peer connects."""

from .gateway import WebRTCGateway
from .options import INSTALL_HINT, MAX_OFFER_BYTES, OfferError, WebRTCOptions, aiortc_available, parse_ice_servers
from .routes import mount_webrtc

__all__ = [
    "INSTALL_HINT",
    "MAX_OFFER_BYTES",
    "OfferError",
    "WebRTCGateway",
    "WebRTCOptions",
    "aiortc_available",
    "mount_webrtc",
    "parse_ice_servers",
]
