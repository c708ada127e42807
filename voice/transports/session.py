"""What every transport shares, written once: a connection's life around its :class:`~voice.engine.Call` (acquire the
agent instance, greet, check every client message and audio frame against the limits, watch for idle or overlong
calls, close and release), and the ordered single writer of a socket.

A transport module is then only its wire: how bytes arrive, how JSON and audio leave.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .. import observability, protocol
from .._aio import TaskSet
from ..agent import BaseAgent
from ..engine import Call, Peer, Runtime
from ..limits import TokenBucket

log = logging.getLogger("voice.session")

#: query parameters that are credentials, never passed to the agent
CREDENTIALS = ("token",)


def agent_query(params: Mapping[str, str]) -> dict[str, str]:
    """A connection's query parameters as the agent sees them (``call.query``): credentials removed."""
    return {k: v for k, v in params.items() if k not in CREDENTIALS}


class Connection:
    """One client connection to one agent instance, on any wire. ``peer``: how to reach the client."""

    def __init__(self, runtime: Runtime, peer: Peer, *, query: Mapping[str, str] | None = None,
                 principal: Any = None, call_id: str | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.peer = peer
        self.query = agent_query(query or {})
        self.principal = principal
        self.call_id = call_id or self.query.get("_pk")  # the official client's connection id
        self.agent: BaseAgent | None = None
        self.call: Call | None = None
        self.last_activity = time.monotonic()
        self._messages = TokenBucket(self.settings.messages_per_second, self.settings.message_burst)
        self._audio = TokenBucket(self.settings.audio_realtime_factor, self.settings.audio_burst_seconds)
        self._refused = 0
        self._closed = False
        self._tasks = TaskSet("connection")

    async def open(self, agent_name: str, instance: str, *, greet: bool = True) -> Call | None:
        """Acquire the instance and create the call (``welcome`` and ``status: idle`` first when ``greet``). An
        unknown agent gets an ``error`` and close 4404; returns None then."""
        agent = await self.runtime.acquire(agent_name, instance)
        if greet:
            self.peer.send_json(protocol.welcome())
        if agent is None:
            self.peer.send_json(protocol.error(f"unknown agent {agent_name[:60]!r}", "unknown_agent"))
            await self.peer.close(protocol.CLOSE_UNKNOWN_AGENT, "unknown agent")
            return None
        self.agent = agent
        if greet:
            self.peer.send_json(protocol.status("idle"))
        self.call = Call(agent, self.peer, self.settings, query=self.query, call_id=self.call_id,
                         principal=self.principal)
        self._tasks.spawn(self._watchdog(), name=f"watchdog-{self.call.id}")
        observability.connection_opened(getattr(self.peer, "transport", "other"))
        observability.call_opened(self.call, instance)
        return self.call

    # --- from the client ------------------------------------------------------------------------------------

    async def receive_text(self, frame: str) -> None:
        """One JSON text frame: checked, parsed, then handed to the call (or refused with an ``error``)."""
        self.last_activity = time.monotonic()
        call = self.call
        if call is None:
            return
        if len(frame) > self.settings.max_message_bytes:
            return await self.refuse(f"message larger than {self.settings.max_message_bytes} bytes", "too_large")
        if not self._messages.take(1.0):
            return await self.refuse("too many messages; slow down", "rate_limited")
        try:
            message = protocol.parse_client_message(frame, self.settings.max_text_chars)
        except protocol.ProtocolError as exc:
            return await self.refuse(str(exc), exc.code)
        if message.type == "playback_ack":
            self.on_playback_ack(message.played_samples or 0)
        elif message.type in protocol.CLIENT_TYPES:
            await call.handle(message)
        elif call.takes_app_messages():
            call.app_message(message.raw or {})
        else:
            await self.refuse(f"unknown message type {message.type[:40]!r}", "unknown_type")

    def receive_audio(self, pcm: bytes) -> None:
        """One frame of 16 kHz mono int16 PCM: checked (size, whole samples, real-time rate), then to the call."""
        self.last_activity = time.monotonic()
        call = self.call
        if call is None:
            return
        size = len(pcm)
        if size > self.settings.max_frame_bytes:
            self._tasks.spawn(self.refuse(f"audio frame larger than {self.settings.max_frame_bytes} bytes",
                                          "too_large"))
        elif size & 1:
            self._tasks.spawn(self.refuse("audio frames must hold whole 16-bit samples (even length)", "odd_frame"))
        elif call.speech is not None and not self._audio.take(size / 32000):
            self._tasks.spawn(self.refuse("audio arrives faster than real time allows; dropped", "rate_limited"))
        else:
            call.feed_audio(pcm)

    def on_playback_ack(self, played_samples: int) -> None:
        """The client reported its playback position (only WebSocket outputs use it)."""
        ack = getattr(self.peer.output, "on_ack", None)
        if ack is not None:
            ack(played_samples)

    async def refuse(self, message: str, code: str) -> None:
        """Tell the client what was refused; too many refusals close the connection (1008)."""
        self._refused += 1
        if self.call is not None:
            self.call.send_error(message, code)
        if self._refused >= self.settings.abuse_close_after:
            log.warning("closing %s: %d refused messages", self.call_id, self._refused)
            await self.close(protocol.CLOSE_POLICY, "too many invalid or excess messages")

    # --- watchdog and close ---------------------------------------------------------------------------------

    async def _watchdog(self) -> None:
        """Ends calls that run too long and closes connections that went silent (a dead client)."""
        settings = self.settings
        while not self._closed and self.call is not None:
            await asyncio.sleep(min(1.0, settings.idle_timeout_seconds / 4))
            call, now = self.call, time.monotonic()
            if call is None:
                return
            if now - self.last_activity > settings.idle_timeout_seconds:
                log.info("closing idle connection %s", call.id)
                call.send_error("no audio or messages for too long", "idle_timeout")
                self._tasks.spawn(self.close(protocol.CLOSE_IDLE, "idle"))
                return
            if call.in_call and call.started_at is not None and now - call.started_at > settings.max_call_seconds:
                call.send_error("the call reached its maximum duration", "call_too_long")
                self._tasks.spawn(call.end())

    async def close(self, code: int | None = None, reason: str = "") -> None:
        """End the call and release the instance; with ``code``, also close the connection with it."""
        if not self._closed:
            self._closed = True
            call, agent = self.call, self.agent
            if call is not None:
                try:
                    await call.close()
                except Exception:
                    log.exception("closing call %s failed", call.id)
                observability.call_closed(call)
            if agent is not None:
                self.runtime.release(agent)
            await self._tasks.cancel_all()
        if code is not None:
            await self.peer.close(code, reason)


class OrderedWriter:
    """A socket's single writer: items leave in the order they were queued, one task sends them. A client that
    stops reading is closed (1008) rather than buffered without bound."""

    def __init__(self, send: Callable[[dict[str, Any]], Awaitable[None]], max_items: int, max_bytes: int,
                 on_error: Callable[[BaseException], None] | None = None, transport: str = "websocket") -> None:
        self._send = send
        self.transport = transport  # the metrics label
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._on_error = on_error
        self._bytes = 0
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.close_code: int | None = None
        self._task = asyncio.create_task(self._run(), name="voice-writer")

    def send_text(self, text: str) -> None:
        """Queue a text frame."""
        self._put({"type": "websocket.send", "text": text}, len(text))

    def send_json(self, message: dict[str, Any], compact: bool = False) -> None:
        """Queue a JSON text frame."""
        self.send_text(json.dumps(message, separators=(",", ":")) if compact else json.dumps(message))

    def send_bytes(self, data: bytes) -> None:
        """Queue a binary frame."""
        self._put({"type": "websocket.send", "bytes": data}, len(data))

    def _put(self, item: dict[str, Any], size: int) -> None:
        if self.close_code is not None:
            return
        if self._queue.qsize() >= self.max_items or self._bytes + size > self.max_bytes:
            log.warning("closing a client that does not read (%d messages, %d bytes queued)",
                        self._queue.qsize(), self._bytes)
            while not self._queue.empty():  # the backlog is dropped: the close frame goes out next
                self._queue.get_nowait()
            self._bytes = 0
            self.close(protocol.CLOSE_POLICY, "not reading")
            observability.slow_client_closed(self.transport)
            return
        self._bytes += size
        item["size"] = size
        self._queue.put_nowait(item)

    def close(self, code: int, reason: str = "") -> None:
        """Queue the close frame; nothing is queued after it."""
        if self.close_code is None:
            self.close_code = code
            self._queue.put_nowait({"type": "websocket.close", "code": code, "reason": reason[:120], "size": 0})

    async def _run(self) -> None:
        try:
            while (item := await self._queue.get()) is not None:
                self._bytes -= item.pop("size")
                await self._send(item)
                if item["type"] == "websocket.close":
                    return
        except Exception as exc:  # noqa: BLE001 - the socket went away; the reader notices and cleans up
            log.debug("writer stopped: %r", exc)
            if self.close_code is None:
                self.close_code = protocol.CLOSE_GOING_AWAY
            if self._on_error is not None:
                self._on_error(exc)

    async def finish(self, grace: float = 2.0) -> None:
        """Let what is queued go out (for up to ``grace`` seconds), then stop."""
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except (TimeoutError, Exception):  # noqa: BLE001
            self._task.cancel()

    @property
    def done(self) -> bool:
        """Whether the writer has stopped."""
        return self._task.done()
