"""uvicorn's WebSocket protocol with one shortcut for audio: binary frames go straight to the connection.

Under stock ASGI every 20 ms audio frame is queued, reading pauses and resumes (two event-loop calls), and the
handler task wakes through the whole middleware stack to pick the frame up. With this protocol the app may register
a *frame sink* through the ``voice.frames`` scope extension (``{"set_sink": callable}``): a binary frame that
arrives while the app waits in ``receive`` with nothing queued (exactly when stock ASGI would hand it over at once)
goes to the sink instead, in ``data_received``. Everything else (text frames, frames that arrive while the app is
busy with a message or behind a queued one, frames the sink declines) takes the normal ASGI path, so the app sees
messages in the order they were sent.

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
    _receiving = False  # the app is waiting in receive()

    def handle_connect(self, event: Any) -> None:
        """The upgrade request: offer the extension in the scope before the app starts."""
        self._sink = None
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # None: the upgrade was refused before an app ran
            scope["extensions"][EXTENSION] = {"set_sink": self._set_sink}

    def _set_sink(self, sink: FrameSink | None) -> None:
        self._sink = sink

    async def receive(self) -> Any:
        """ASGI ``receive``, noting while the app waits in it."""
        self._receiving = True
        try:
            return await super().receive()
        finally:
            self._receiving = False

    def handle_bytes(self, event: Any) -> None:
        """A binary frame: a whole message, arriving while the app waits with nothing queued, goes to the sink."""
        sink = self._sink
        if sink is not None and event.fin and self._receiving and self.queue.empty() and not self.close_sent:
            try:
                taken = sink(bytes(event.data))
            except Exception:  # the app's bug must not take the protocol down: fall back to receive
                log.exception("the frame sink failed; frames go through receive from now on")
                self._sink = None
                taken = False
            if taken:
                return
        super().handle_bytes(event)
