"""``deploy/haproxy.cfg`` in a real HAProxy in front of three tiny stand-ins for ``voice serve`` (each says who it is,
over HTTP and WebSocket, and answers ``/readyz`` as told): an instance's requests stick to one process, instances
spread, Twilio calls go to the least busy, and a process whose ``/readyz`` says 503 gets no new connections while the
calls it holds go on. (The cluster test with real ``voice serve`` processes is separate.)"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
import websockets

from tests.haproxy import HAProxy
from tests.harness import LiveServer

NAMES = ("voice1", "voice2", "voice3")


class Stub:
    """An ASGI app standing in for one ``voice serve``: every response names the server; a WebSocket greets with the
    name and echoes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ready = True
        self.refusing = False  # 503 to everything but /readyz: draining, before the health checks have noticed
        self.server = LiveServer(self)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        elif scope["type"] == "http":
            status, body = 200, json.dumps({"server": self.name, "path": scope["path"]}).encode()
            if scope["path"] == "/readyz":
                status, body = (200, b"ready") if self.ready else (503, b"draining")
            elif self.refusing:
                status, body = 503, b"shutting down"
            await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": body})
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            if self.refusing:  # refused before the upgrade, as voice's gate does
                await send({"type": "websocket.http.response.start", "status": 503, "headers": []})
                await send({"type": "websocket.http.response.body", "body": b"shutting down"})
                return
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": self.name})
            while (message := await receive())["type"] == "websocket.receive":
                await send({"type": "websocket.send", "text": message.get("text") or ""})


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[tuple[HAProxy, dict[str, Stub]]]:
    stubs = {name: Stub(name) for name in NAMES}
    for stub in stubs.values():
        await stub.server.start()
    proxy = HAProxy({name: stub.server.port for name, stub in stubs.items()}).start()
    try:
        for backend in ("voice_instances", "voice_twilio"):
            for name in NAMES:
                await proxy.wait_status(backend, name, "UP")
        yield proxy, stubs
    finally:
        proxy.stop()
        for stub in stubs.values():
            await stub.server.stop()


async def served_by(client: httpx.AsyncClient, proxy: HAProxy, path: str, method: str = "GET") -> str:
    response = await client.request(method, proxy.url + path)
    assert response.status_code == 200, response.text
    return response.json()["server"]


async def ws_served_by(proxy: HAProxy, path: str) -> tuple[str, websockets.ClientConnection]:
    ws = await websockets.connect(proxy.ws + path)
    return str(await ws.recv()), ws


async def test_an_instance_sticks_to_one_process_and_instances_spread(cluster) -> None:
    proxy, _ = cluster
    owner: dict[str, str] = {}
    async with httpx.AsyncClient() as client:
        for n in range(24):
            base = f"/agents/assistant/user-{n}"
            seen = {
                await served_by(client, proxy, base),
                await served_by(client, proxy, base + "/messages?limit=5"),
                await served_by(client, proxy, base + "/webrtc", "POST"),
                await served_by(client, proxy, base + "/"),
            }
            name, ws = await ws_served_by(proxy, base + "?token=secret")
            await ws.close()
            seen.add(name)
            assert len(seen) == 1, f"{base} went to {seen}"
            owner[base] = name
    spread = Counter(owner.values())
    assert len(spread) == 3 and min(spread.values()) >= 3, spread  # consistent hashing spreads, roughly
    # HAProxy's own stats agree with what the servers said (24 instances x 5 connections)
    assert sum(proxy.served("voice_instances").values()) >= 24 * 5
    async with httpx.AsyncClient() as client:  # and it is stable: the same again later
        for base, name in owner.items():
            assert await served_by(client, proxy, base) == name


async def test_twilio_calls_go_to_the_least_busy_process(cluster) -> None:
    proxy, _ = cluster
    calls = [await ws_served_by(proxy, "/twilio/media") for _ in range(6)]  # six calls in progress at once
    try:
        assert Counter(name for name, _ in calls) == {name: 2 for name in NAMES}
        assert {name: int(row["scur"]) for name, row in proxy.stats("voice_twilio").items()} == {n: 2 for n in NAMES}
    finally:
        for _, ws in calls:
            await ws.close()


async def test_a_process_that_is_not_ready_gets_no_new_connections_and_keeps_its_calls(cluster) -> None:
    proxy, stubs = cluster
    async with httpx.AsyncClient() as client:
        owner = {n: await served_by(client, proxy, f"/agents/a/i{n}") for n in range(30)}
        draining = Counter(owner.values()).most_common(1)[0][0]
        mine = next(n for n, name in owner.items() if name == draining)
        name, call = await ws_served_by(proxy, f"/agents/a/i{mine}")  # a call in progress on it
        assert name == draining

        stubs[draining].ready = False  # /readyz: 503
        await proxy.wait_status("voice_instances", draining, "DOWN")
        await proxy.wait_status("voice_twilio", draining, "DOWN")
        now = {n: await served_by(client, proxy, f"/agents/a/i{n}") for n in range(30)}
        assert draining not in now.values()
        assert all(now[n] == owner[n] for n in owner if owner[n] != draining)  # only its share moved
        twilio = [await ws_served_by(proxy, "/twilio/media") for _ in range(4)]
        assert draining not in {name for name, _ in twilio}
        await call.send("still talking")
        assert await asyncio.wait_for(call.recv(), 2) == "still talking"  # the call it holds goes on

        stubs[draining].ready = True
        await proxy.wait_status("voice_instances", draining, "UP")
        assert {n: await served_by(client, proxy, f"/agents/a/i{n}") for n in range(30)} == owner  # its share is back
        for _, ws in [*twilio, (None, call)]:
            await ws.close()


async def test_a_refusal_before_the_checks_notice_is_retried_on_another_process(cluster) -> None:
    """A draining process refuses new connections (503) at once, but the health checks take a moment to mark it
    down: HAProxy's retry-on 503 with redispatch sends those connections elsewhere, so no client sees the refusal;
    a process that just died (connection refused) is retried the same way."""
    proxy, stubs = cluster
    async with httpx.AsyncClient() as client:
        owner = {n: await served_by(client, proxy, f"/agents/a/r{n}") for n in range(30)}
        victim = Counter(owner.values()).most_common(1)[0][0]
        stubs[victim].refusing = True  # /readyz still 200: the checks keep it UP
        mine = [n for n, name in owner.items() if name == victim]
        for n in mine:
            assert await served_by(client, proxy, f"/agents/a/r{n}") != victim
            name, ws = await ws_served_by(proxy, f"/agents/a/r{n}")
            assert name != victim
            await ws.close()
        assert proxy.status("voice_instances")[victim] == "UP"  # nothing was marked down: the retries did it
        stubs[victim].refusing = False
        await stubs[victim].server.stop()  # dies: connections to it are refused until the checks notice
        for n in mine:
            assert await served_by(client, proxy, f"/agents/a/r{n}") != victim
