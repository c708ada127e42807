"""The framework floor: what uvicorn and the WebSocket library cost with no voice library at all.

A bare ASGI app (no FastAPI, no voice) that speaks just enough of the cf-voice protocol for
``../shared/bench/load_client.py --protocol cf-voice`` (hello → welcome, start_call → audio_config + listening) and
answers each turn-marker frame the way ``bench/fake_server.py`` does on the wire: three status messages and the
reply's audio (``okay``: 0.1 s in one message; ``two-sentences``: two messages of 1.0 s). Everything the voice server
costs beyond this is the library's own.

    taskset -c 0 python bench/floor_server.py --port 8765 --reply two-sentences --ws websockets-sansio
    python bench/overhead.py --server floor --reply two-sentences --counts 150 --no-search
"""

from __future__ import annotations

import argparse
import json
import struct
from typing import Any

import uvicorn

MARKER = struct.pack("<4h", 12345, -12345, 12345, -12345)
REPLIES = {"okay": [bytes(3200)], "two-sentences": [bytes(32000), bytes(32000)]}  # 16 kHz int16


def make_app(reply: list[bytes]):
    """The ASGI app: one WebSocket route for every path."""
    def text(message: dict[str, Any]) -> dict[str, Any]:
        return {"type": "websocket.send", "text": json.dumps(message)}

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is not None:
                if data.startswith(MARKER):
                    for status in ("thinking", "speaking", "listening"):
                        await send(text({"type": "status", "status": status}))
                    for audio in reply:
                        await send({"type": "websocket.send", "bytes": audio})
                continue
            kind = json.loads(message["text"]).get("type")
            if kind == "hello":
                await send(text({"type": "welcome", "protocol_version": 1}))
            elif kind == "start_call":
                await send(text({"type": "audio_config", "format": "pcm16", "sample_rate": 16000}))
                await send(text({"type": "status", "status": "listening"}))

    return app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--reply", choices=list(REPLIES), default="okay")
    ap.add_argument("--ws", default="websockets", help="uvicorn's WebSocket implementation")
    a = ap.parse_args()
    uvicorn.run(make_app(REPLIES[a.reply]), host="127.0.0.1", port=a.port, log_level="warning", loop="uvloop",
                http="httptools", ws=a.ws, ws_max_size=1 << 20, ws_ping_interval=None)


if __name__ == "__main__":
    main()
