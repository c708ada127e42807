"""The browser protocol's wire: a WebSocket with JSON text frames and 16 kHz PCM binary frames (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import protocol
from ..audio import AudioChunk
from ..engine import Peer, Runtime
from ..reply import AudioOutput, PlaybackClock
from . import uvicorn_ws
from .session import Connection, OrderedWriter

log = logging.getLogger("voice.ws")


class WebSocketOutput(AudioOutput):
    """pcm16 frames to the client. What was heard comes from the client's ``playback_ack`` reports when it sends
    them, and is estimated from the audio sent and the time elapsed when it does not."""

    def __init__(self, writer: OrderedWriter, sample_rate: int, ack_wait: float) -> None:
        self.writer = writer
        self.sample_rate = sample_rate
        self.clock = PlaybackClock(sample_rate)
        self.ack_wait = ack_wait
        self.gone = False  # the client disconnected: no report will come
        self._stream_base = 0  # timeline position of the client's sample 0 (its count restarts at audio_config)
        self._acked: int | None = None
        self._acked_at = 0.0
        self._ack_event = asyncio.Event()

    @property
    def written(self) -> int:
        """Samples sent."""
        return self.clock.written

    def begin_stream(self) -> None:
        """``audio_config`` went out: the client counts played samples from here."""
        self._stream_base = self.clock.written
        self._acked = None

    def on_ack(self, played_samples: int) -> None:
        """A ``playback_ack``: the client has played up to ``played_samples`` of this stream."""
        self._acked = min(self._stream_base + played_samples, self.clock.written)
        self._acked_at = time.monotonic()
        self._ack_event.set()
        self.progressed()

    async def write(self, chunk: AudioChunk) -> None:
        """Send one chunk as a binary frame."""
        self.writer.send_bytes(chunk.data)
        self.clock.on_write(chunk.samples)

    def played(self) -> int:
        """The client's report when it sends them (a client that reports is trusted), else the estimate."""
        estimate = self.clock.played()
        if self._acked is not None and estimate > self._acked:
            return self._acked
        return estimate

    def pause(self) -> None:
        """``playback_pause`` went out: a client that honours it holds its audio (one that does not plays on until
        the decision; its acks, if it sends them, keep the heard position true either way)."""
        self.clock.pause(self._acked if self._acked is not None and self._acked < self.clock.played() else None)

    def resume(self) -> None:
        """``playback_resume`` went out."""
        self.clock.resume()
        self.progressed()

    async def clear(self) -> int:
        """Barge-in: wait briefly for a fresh report, then drop the timeline's rest."""
        if self._acked is None:
            return self.clock.clear()
        if time.monotonic() - self._acked_at > 0.05 and not self.gone:
            self._ack_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ack_event.wait(), self.ack_wait)
        return self.clock.clear(heard=self._acked)


class WebSocketPeer(Peer):
    """JSON and audio leave through one ordered writer."""

    transport = "websocket"  # the metrics label

    def __init__(self, websocket: WebSocket, runtime: Runtime) -> None:
        settings = runtime.settings
        self.writer = OrderedWriter(websocket.send, settings.max_outbound_messages, settings.max_outbound_bytes)
        self.output: WebSocketOutput = WebSocketOutput(
            self.writer, settings.output_sample_rate, settings.ack_wait_seconds)

    def send_json(self, message: dict[str, Any]) -> None:
        """Queue a JSON message."""
        self.writer.send_json(message)

    async def close(self, code: int = protocol.CLOSE_NORMAL, reason: str = "") -> None:
        """Close the socket with ``code`` once what is queued has gone out."""
        self.writer.close(code, reason)
        await self.writer.finish()


async def serve_websocket(
    websocket: WebSocket, runtime: Runtime, agent_name: str, instance_id: str, principal: object = None
) -> None:
    """The whole life of one client connection at ``/agents/{agent}/{instance}``."""
    await websocket.accept()
    peer = WebSocketPeer(websocket, runtime)
    connection = Connection(runtime, peer, query=websocket.query_params, principal=principal)
    if await connection.open(agent_name, instance_id) is None:
        return
    receive = websocket._receive  # the ASGI receive itself: Starlette's wrapper re-checks its state on every frame

    def take_frame(data: bytes) -> bool:  # the direct path (uvicorn_ws): one frame, in data_received
        if peer.writer.close_code is not None:
            return False
        connection.receive_audio(data)
        return True

    frames = websocket.scope.get("extensions", {}).get(uvicorn_ws.EXTENSION)
    if frames is not None:
        frames["set_sink"](take_frame)
    try:
        while peer.writer.close_code is None:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            if data is not None:
                connection.receive_audio(data)
            elif message.get("text") is not None:
                await connection.receive_text(message["text"])
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("connection %s failed", connection.call_id)
    finally:
        if frames is not None:
            frames["set_sink"](None)
        peer.output.gone = True
        await connection.close()
        await peer.writer.finish()
