"""uvicorn's WebSocket protocol with one shortcut for audio: binary frames go straight to the connection.

Under stock ASGI every 20 ms audio frame is queued, reading pauses and resumes (two event-loop calls), and the
handler task wakes through the whole middleware stack to pick the frame up. With this protocol the app may register
a *frame sink* through the ``voice.frames`` scope extension (``{"set_sink": callable}``): a binary frame that
arrives while nothing is queued before it is handed to the sink at once, in ``data_received``. Everything else (text
frames, frames behind a queued message, frames the sink declines) takes the normal ASGI path, so the order of
messages is kept.

``voice serve`` uses it. With uvicorn's own command::

    uvicorn myapp:app --ws voice.transports.uvicorn_ws:VoiceWebSocketProtocol

Under any other server (or uvicorn's stock protocols) the extension is absent and frames arrive through ``receive``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

log = logging.getLogger("voice.ws")

#: the scope extension's name; its value is ``{"set_sink": callable}``
EXTENSION = "voice.frames"

#: takes one binary frame; returns False to leave it to ``receive`` instead
FrameSink = Callable[[bytes], bool]


class VoiceWebSocketProtocol(WebSocketsSansIOProtocol):
    """:class:`WebSocketsSansIOProtocol` plus the ``voice.frames`` extension."""

    _sink: FrameSink | None = None

    def handle_connect(self, event: Any) -> None:
        """The upgrade request: offer the extension in the scope before the app starts."""
        self._sink = None
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # None: the upgrade was refused before an app ran
            scope["extensions"][EXTENSION] = {"set_sink": self._set_sink}

    def _set_sink(self, sink: FrameSink | None) -> None:
        self._sink = sink

    def handle_bytes(self, event: Any) -> None:
        """A binary frame: a whole message with nothing queued before it goes to the sink."""
        sink = self._sink
        if sink is not None and event.fin and not self.close_sent and self.queue.empty():
            try:
                taken = sink(bytes(event.data))
            except Exception:  # the app's bug must not take the protocol down: fall back to receive
                log.exception("the frame sink failed; frames go through receive from now on")
                self._sink = None
                taken = False
            if taken:
                return
        super().handle_bytes(event)
