"""Where audio enters and leaves: the shared connection session (:mod:`.session`: call lifecycle, limits, watchdog,
ordered writer), admission (:mod:`.gate`), and one module per wire: :mod:`.websocket`, :mod:`.webrtc`. Phone lines
(``adapters.twilio``) build on the same session."""

from .gate import Gate, Refusal
from .mount import include_first, mount_target
from .session import Connection, OrderedWriter, agent_query
from .websocket import WebSocketOutput, WebSocketPeer, serve_websocket

__all__ = [
    "Connection",
    "Gate",
    "OrderedWriter",
    "Refusal",
    "WebSocketOutput",
    "WebSocketPeer",
    "agent_query",
    "include_first",
    "mount_target",
    "serve_websocket",
]
