"""Test harness: the real app under uvicorn on loopback, and a protocol client over a real WebSocket."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import uvicorn
import websockets

from voice.transports.uvicorn_ws import VoiceWebSocketProtocol


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
    """Send ``sig`` and wait for the process to exit; kill it if it takes longer than ``timeout``."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


STOP_REPORT_SECONDS = 20.0


def print_pending_tasks(why: str) -> None:
    """Print the stack of every pending task of the running loop (to stderr, which pytest shows on failure and
    with ``-s``; CI logs keep it)."""
    print(f"\n=== {why}; pending tasks:", file=sys.stderr)
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        print(f"--- {task.get_name()}: {task.get_coro()!r}", file=sys.stderr)
        task.print_stack(limit=12, file=sys.stderr)


class LiveServer:
    """Runs an ASGI app with uvicorn inside the test's event loop."""

    def __init__(self, app, port: int | None = None, ws: Any = VoiceWebSocketProtocol) -> None:
        self.app = app
        self.ws_protocol = ws  # uvicorn's WebSocket protocol: by default the one `voice serve` runs
        self.port = port or free_port()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> LiveServer:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
                                ws=self.ws_protocol)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        deadline = time.monotonic() + 30
        while not self._server.started:
            if self._task.done():
                self._task.result()
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            await asyncio.sleep(0.02)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            done, _ = await asyncio.wait({self._task}, timeout=STOP_REPORT_SECONDS)
            if not done:  # something in the app outlives its connection: say what, then go on waiting
                print_pending_tasks(f"the server did not stop within {STOP_REPORT_SECONDS:.0f} s")
            await self._task

    async def __aenter__(self) -> LiveServer:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()


class Client:
    """A protocol client that records every message with its arrival time."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.messages: list[tuple[float, Any]] = []  # (time, dict or bytes)
        self._new = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self.closed: websockets.ConnectionClosed | None = None

    @classmethod
    async def connect(cls, url: str, hello: bool = True, **kwargs) -> Client:
        ws = await websockets.connect(url, max_size=None, **kwargs)
        client = cls(ws)
        if hello:
            await client.send({"type": "hello", "protocol_version": 1})
            await client.wait_for("welcome")
        return client

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                item = raw if isinstance(raw, bytes) else json.loads(raw)
                self.messages.append((time.monotonic(), item))
                self._new.set()
        except websockets.ConnectionClosed as exc:
            self.closed = exc
        else:  # a normal close (1000/1001) ends the iteration without an exception
            self.closed = self.ws.protocol.close_exc
        self._new.set()

    async def send(self, message: dict | str | bytes) -> None:
        await self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    def json(self, kind: str | None = None) -> list[dict]:
        return [m for _, m in self.messages if isinstance(m, dict) and (kind is None or m.get("type") == kind)]

    def audio(self) -> bytes:
        return b"".join(m for _, m in self.messages if isinstance(m, bytes))

    def count(self, kind: str) -> int:
        return len(self.json(kind))

    async def wait_for(self, kind: str, timeout: float = 5.0, after: int = 0, **fields) -> dict:
        """The first message of ``kind`` (with matching ``fields``) at index ≥ ``after`` in the message list."""
        deadline = time.monotonic() + timeout
        while True:
            for i, (_, m) in enumerate(self.messages):
                if i >= after and isinstance(m, dict) and m.get("type") == kind:
                    if all(m.get(k) == v for k, v in fields.items()):
                        return m
            if self.closed is not None:
                raise AssertionError(f"closed ({self.closed}) before {kind} {fields}; got {self.json()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind} {fields} within {timeout}s; got {self.json()}")
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def wait_audio(self, min_bytes: int = 1, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.audio()) < min_bytes:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.audio())} audio bytes within {timeout}s")
            await asyncio.sleep(0.01)

    def mark(self) -> int:
        return len(self.messages)

    async def start_call(self) -> None:
        await self.send({"type": "start_call"})
        await self.wait_for("audio_config")
        await self.wait_for("status", status="listening")

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)
