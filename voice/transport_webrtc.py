"""Deprecated: use :mod:`voice.transports.webrtc`. This re-export stays for one release."""

import warnings

from .transports.webrtc import (  # noqa: F401
    INSTALL_HINT,
    MAX_OFFER_BYTES,
    OfferError,
    WebRTCGateway,
    WebRTCOptions,
    aiortc_available,
    mount_webrtc,
    parse_ice_servers,
)

warnings.warn("voice.transport_webrtc is deprecated; import from voice.transports.webrtc", DeprecationWarning,
              stacklevel=2)
