"""Process faults: SIGKILL during active calls loses no completed turn; SIGTERM drains gracefully."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time

import asyncpg
import httpx
import pytest

from tests.browser import ROOT
from tests.harness import Client, free_port
from voice.testing import fake_speech_frame

# every test runs on SQLite and on PostgreSQL (VOICE_DATABASE_URL: a fresh database per test; tests/pg.py)
pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("store_kind")]


class FakeServe:
    def __init__(self, db, port=None):
        self.db, self.port = db, port or free_port()
        self.proc = None

    def start(self):
        env = dict(os.environ, VOICE_DB=str(self.db))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voice.cli", "serve", "tests.fake_app:app", "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=0.3).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise TimeoutError("server did not start")

    @property
    def ws(self):
        return f"ws://127.0.0.1:{self.port}"

    def messages(self, instance):
        return httpx.get(f"http://127.0.0.1:{self.port}/agents/worker/{instance}/messages").json()["messages"]


async def stored(store_kind: str, db, instance: str) -> list[tuple[str, str]]:
    """(role, content) of an instance's messages, read from the store itself (the server may be gone)."""
    if store_kind == "postgres":
        conn = await asyncpg.connect(os.environ["VOICE_DATABASE_URL"])
        try:
            rows = await conn.fetch("SELECT role, content FROM voice_messages WHERE instance=$1 ORDER BY id", instance)
        finally:
            await conn.close()
        return [(r["role"], r["content"]) for r in rows]
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return conn.execute("SELECT role, content FROM messages WHERE instance=? ORDER BY id", (instance,)).fetchall()
    finally:
        conn.close()


async def test_sigkill_during_calls_keeps_every_completed_turn_and_schedules(tmp_path, store_kind):
    server = FakeServe(tmp_path / "kill.db").start()
    completed: dict[str, list[str]] = {}
    clients = []
    try:
        for i in range(3):
            c = await Client.connect(f"{server.ws}/agents/worker/k{i}")
            await c.start_call()
            clients.append(c)
        await clients[0].send({"type": "text_message", "text": "remind me to stretch"})
        await clients[0].wait_for("transcript_end", text="I will remind you.")
        for n in range(4):  # completed voice turns: reply sent and played out
            for i, c in enumerate(clients):
                mark = c.mark()
                await c.send(fake_speech_frame("final", f"task {n} of {i}"))
                await c.wait_for("transcript_end", after=mark)
                await asyncio.sleep(0.2)  # the user listens to the whole reply (~0.1 s) before speaking again
                completed.setdefault(f"k{i}", []).append(f"task {n} of {i}")
        await asyncio.sleep(0.6)  # the last replies play out (~0.1 s of audio each)
        for c in clients:  # and turns in flight at the moment of the kill
            await c.send(fake_speech_frame("final", "slow unfinished"))
        await asyncio.sleep(0.2)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        for c in clients:
            for _ in range(50):
                if c.closed:
                    break
                await asyncio.sleep(0.05)
            assert c.closed is not None  # the clients notice, so they can reconnect
        assert ("user", "task 3 of 2") in await stored(store_kind, server.db, "k2")  # (and SQLite's file is sound)
        await asyncio.sleep(1.2)  # the reminder comes due while the server is down
        server.start()  # same database, same port: clients reconnect
        for instance, said in completed.items():
            msgs = server.messages(instance)
            users = [m["content"] for m in msgs if m["role"] == "user"]
            replies = [m["content"] for m in msgs if m["role"] == "assistant"]
            for text in said:
                assert text in users, (instance, text, users)
                assert f"Done: {text}." in replies, (instance, text, replies)
        for _ in range(50):
            if any(m["content"].startswith("Reminder:") for m in server.messages("k0")):
                break
            await asyncio.sleep(0.1)
        assert any(m["content"] == "Reminder: remind me to stretch." for m in server.messages("k0"))
        again = await Client.connect(f"{server.ws}/agents/worker/k1")
        await again.start_call()
        await again.send(fake_speech_frame("final", "after restart"))
        assert (await again.wait_for("transcript_end"))["text"] == "Done: after restart."
        await again.close()
    finally:
        server.proc.kill()
        server.proc.wait()


async def test_sigterm_lets_the_turn_in_flight_finish_then_tells_clients(tmp_path, store_kind):
    server = FakeServe(tmp_path / "term.db").start()
    try:
        c = await Client.connect(f"{server.ws}/agents/worker/t")
        await c.start_call()
        await c.send(fake_speech_frame("final", "slow answer"))
        await c.wait_for("status", status="thinking")
        server.proc.send_signal(signal.SIGTERM)
        end = await c.wait_for("transcript_end", timeout=5)  # the reply in flight still arrives
        assert end["text"] == "Done: slow answer."
        err = await c.wait_for("error", code="server_shutdown", timeout=5)
        assert "reconnect" in err["message"]
        for _ in range(50):
            if c.closed:
                break
            await asyncio.sleep(0.05)
        assert c.closed is not None and c.closed.rcvd.code == 1001
        assert server.proc.wait(10) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its shutdown
        rows = await stored(store_kind, server.db, "t")
        assert rows[0] == ("user", "slow answer") and rows[1][1].startswith("Done")
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
