"""WebSocket transport: bytes and JSON frames ↔ a :class:`~voice.call.Call`, for the browser protocol."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from . import protocol
from .audio import AudioChunk
from .call import Call, Peer
from .playback import AudioOutput, PlaybackClock
from .runtime import Runtime

log = logging.getLogger("voice.ws")


class WebSocketOutput(AudioOutput):
    """pcm16 frames to the client. What was heard comes from the client's ``playback_ack`` reports when it sends
    them, and is estimated from the audio sent and the time elapsed when it does not."""

    def __init__(self, peer: WebSocketPeer, sample_rate: int, ack_wait: float) -> None:
        self.peer = peer
        self.sample_rate = sample_rate
        self.clock = PlaybackClock(sample_rate)
        self.ack_wait = ack_wait
        self._stream_base = 0  # timeline position of the client's sample 0 (its count restarts at audio_config)
        self._acked: int | None = None
        self._acked_at = 0.0
        self._ack_event = asyncio.Event()

    @property
    def written(self) -> int:
        return self.clock.written

    def stream_started(self) -> None:
        self._stream_base = self.clock.written
        self._acked = None

    def on_ack(self, played_samples: int) -> None:
        self._acked = min(self._stream_base + played_samples, self.clock.written)
        self._acked_at = time.monotonic()
        self._ack_event.set()

    async def write(self, chunk: AudioChunk) -> None:
        self.peer.send_bytes(chunk.data)
        self.clock.on_write(chunk.samples)

    def played(self) -> int:
        if self._acked is not None:
            # a client that reports is trusted, but it may still be behind our estimate of a finished reply
            return self._acked if self.clock.played() > self._acked else self.clock.played()
        return self.clock.played()

    async def clear(self) -> int:
        if self._acked is None:
            return self.clock.clear()
        if time.monotonic() - self._acked_at > 0.05 and not self.peer.gone:
            self._ack_event.clear()
            try:
                await asyncio.wait_for(self._ack_event.wait(), self.ack_wait)
            except asyncio.TimeoutError:
                pass
        return self.clock.clear(heard=self._acked)


class WebSocketPeer(Peer):
    """Owns the socket's single writer task, so JSON and audio leave in the order they were queued."""

    def __init__(self, websocket: WebSocket, runtime: Runtime) -> None:
        self.websocket = websocket
        settings = runtime.settings
        self.max_queue = settings.max_outbound_messages
        self.max_bytes = settings.max_outbound_bytes
        self._queued_bytes = 0
        self.output = WebSocketOutput(self, settings.output_sample_rate, settings.ack_wait_seconds)
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop())
        self.close_code: int | None = None
        self.gone = False  # the client disconnected: nothing more will come from it

    def send_json(self, message: dict[str, Any]) -> None:
        if message.get("type") == "audio_config":
            self.output.stream_started()
        self._put({"type": "websocket.send", "text": json.dumps(message)})

    def send_bytes(self, data: bytes) -> None:
        self._put({"type": "websocket.send", "bytes": data})

    def on_playback_ack(self, played_samples: int) -> None:
        self.output.on_ack(played_samples)

    def _put(self, item: dict[str, Any]) -> None:
        if self.close_code is not None:
            return
        size = len(item.get("bytes") or item.get("text") or "")
        if self._queue.qsize() >= self.max_queue or self._queued_bytes + size > self.max_bytes:
            # the client is not reading: drop it rather than buffer without bound
            log.warning("closing a client that does not read (%d messages, %d bytes queued)",
                        self._queue.qsize(), self._queued_bytes)
            self.close_code = protocol.CLOSE_POLICY
            self._queue.put_nowait({"type": "websocket.close", "code": protocol.CLOSE_POLICY, "reason": "not reading"})
            return
        self._queued_bytes += size
        self._queue.put_nowait(item)

    async def _write_loop(self) -> None:
        send = self.websocket.send
        try:
            while (item := await self._queue.get()) is not None:
                await send(item)
                self._queued_bytes -= len(item.get("bytes") or item.get("text") or "")
                if item["type"] == "websocket.close":
                    return
        except Exception as exc:  # noqa: BLE001 - the socket went away; the reader notices and cleans up
            log.debug("writer stopped: %r", exc)

    async def close(self, code: int = protocol.CLOSE_NORMAL, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code = code
            self._queue.put_nowait({"type": "websocket.close", "code": code, "reason": reason})
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), 2.0)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001
            self._writer.cancel()

    async def finish(self) -> None:
        """Let queued messages go out, then stop the writer."""
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), 2.0)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001
            self._writer.cancel()


async def serve_websocket(
    websocket: WebSocket, runtime: Runtime, agent_name: str, instance_id: str, principal: object = None
) -> None:
    """The whole life of one client connection at ``/agents/{agent}/{instance}``."""
    await websocket.accept()
    peer = WebSocketPeer(websocket, runtime)
    agent = await runtime.acquire(agent_name, instance_id)
    peer.send_json(protocol.welcome())
    if agent is None:
        peer.send_json(protocol.error(f"unknown agent {agent_name[:60]!r}", "unknown_agent"))
        await peer.close(protocol.CLOSE_UNKNOWN_AGENT, "unknown agent")
        return
    peer.send_json(protocol.status("idle"))
    query = {k: v for k, v in websocket.query_params.items()}
    query.pop("token", None)  # a credential, not a parameter for the agent
    call = Call(agent, peer, runtime.settings, query=query, call_id=query.get("_pk"), principal=principal)
    receive = websocket.receive
    try:
        while peer.close_code is None:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            if data is not None:
                call.handle_audio(data)
            elif message.get("text") is not None:
                await call.handle_text(message["text"])
    except WebSocketDisconnect:
        pass
    except Exception:  # noqa: BLE001 - one broken connection must not affect others
        log.exception("connection %s failed", call.id)
    finally:
        peer.gone = True
        await call.close()
        runtime.release(agent)
        await peer.finish()
