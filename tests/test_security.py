"""Access control, abuse limits and fault tolerance over the real server on loopback."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from tests.harness import Client, LiveServer
from tests.test_engine import AGENTS, Echo, history
from voice import create_app
from voice.auth import bearer_token, mint_token, signed_tokens
from voice.providers.base import TranscriberError
from voice.testing import FakeSession, FakeTranscriber, FakeTTS, fake_speech_frame

pytestmark = pytest.mark.asyncio


class WhoAmI(Echo):
    async def before_call_start(self, call):
        return getattr(call.principal, "subject", None) != "banned"

    async def on_turn(self, transcript, ctx):
        return f"Hello {getattr(ctx.call.principal, 'subject', 'nobody')}."


def app(tmp_path, **kw):
    kw.setdefault("transcriber", FakeTranscriber())
    kw.setdefault("tts", FakeTTS())
    return create_app(dict(AGENTS, whoami=WhoAmI), db_path=str(tmp_path / "s.db"), **kw)


async def refused(url: str, **kw) -> int:
    with pytest.raises(websockets.InvalidStatus) as exc:
        await websockets.connect(url, **kw)
    return exc.value.response.status_code


async def test_bearer_token_guards_websocket_and_history(tmp_path):
    async with LiveServer(app(tmp_path, authorize=bearer_token("s3cret"))) as srv:
        assert await refused(f"{srv.ws}/agents/echo/a") == 401
        assert await refused(f"{srv.ws}/agents/echo/a?token=wrong") == 401
        c = await Client.connect(f"{srv.ws}/agents/echo/a?token=s3cret")
        await c.send({"type": "text_message", "text": "hi"})
        await c.wait_for("transcript_end")
        await c.close()
        c = await Client.connect(f"{srv.ws}/agents/echo/a", additional_headers={"Authorization": "Bearer s3cret"})
        await c.close()
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{srv.http}/agents/echo/a/messages")).status_code == 401
            ok = await http.get(f"{srv.http}/agents/echo/a/messages", headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200 and ok.json()["messages"][0]["content"] == "hi"


async def test_signed_tokens_reach_only_their_own_instance_and_expire(tmp_path):
    secret = "backend-secret"
    async with LiveServer(app(tmp_path, authorize=signed_tokens(secret))) as srv:
        alice = mint_token(secret, "whoami", "alice", ttl_seconds=60, subject="alice")
        c = await Client.connect(f"{srv.ws}/agents/whoami/alice?token={alice}")
        await c.send({"type": "text_message", "text": "who am i"})
        assert (await c.wait_for("transcript_end"))["text"] == "Hello alice."  # the principal reaches the agent
        await c.close()
        assert await refused(f"{srv.ws}/agents/whoami/bob?token={alice}") == 403
        expired = mint_token(secret, "whoami", "alice", ttl_seconds=-1)
        assert await refused(f"{srv.ws}/agents/whoami/alice?token={expired}") == 401
        forged = mint_token("not-the-secret", "whoami", "alice")
        assert await refused(f"{srv.ws}/agents/whoami/alice?token={forged}") == 401
        tampered = alice[:-2] + ("A" if alice[-2] != "A" else "B") + alice[-1]
        assert await refused(f"{srv.ws}/agents/whoami/alice?token={tampered}") == 401
        async with httpx.AsyncClient() as http:
            r = await http.get(f"{srv.http}/agents/whoami/bob/messages", params={"token": alice})
            assert r.status_code == 403
        banned = mint_token(secret, "whoami", "carol", subject="banned")
        c = await Client.connect(f"{srv.ws}/agents/whoami/carol?token={banned}")
        await c.send({"type": "start_call"})
        assert (await c.wait_for("error"))["code"] == "call_rejected"  # before_call_start decides per user
        await c.close()


async def test_cross_site_websocket_is_refused_by_origin(tmp_path):
    async with LiveServer(app(tmp_path)) as srv:
        assert await refused(f"{srv.ws}/agents/echo/o", origin="http://evil.example") == 403
        same = f"http://127.0.0.1:{srv.port}"
        c = await Client.connect(f"{srv.ws}/agents/echo/o", origin=same)
        await c.close()
        c = await Client.connect(f"{srv.ws}/agents/echo/o")  # no Origin: not a browser
        await c.close()
    async with LiveServer(app(tmp_path, allowed_origins=("https://app.example",))) as srv:
        c = await Client.connect(f"{srv.ws}/agents/echo/o", origin="https://app.example")
        await c.close()
        assert await refused(f"{srv.ws}/agents/echo/o", origin=f"http://127.0.0.1:{srv.port}") == 403


async def test_connection_limits_per_process_and_per_address(tmp_path):
    async with LiveServer(app(tmp_path, max_connections=3, max_connections_per_client=2)) as srv:
        a = await Client.connect(f"{srv.ws}/agents/echo/l1")
        b = await Client.connect(f"{srv.ws}/agents/echo/l2")
        assert await refused(f"{srv.ws}/agents/echo/l3") == 429  # same address
        await a.close()
        await asyncio.sleep(0.1)
        c = await Client.connect(f"{srv.ws}/agents/echo/l3")  # a slot came free
        await b.close()
        await c.close()
    async with LiveServer(app(tmp_path, max_connections=1)) as srv:
        a = await Client.connect(f"{srv.ws}/agents/echo/l1")
        assert await refused(f"{srv.ws}/agents/echo/l2") == 503
        await a.close()


async def test_readiness_says_503_near_the_connection_limit_and_liveness_stays_200(tmp_path):
    async with LiveServer(app(tmp_path, max_connections=10)) as srv, httpx.AsyncClient() as http:
        clients = [await Client.connect(f"{srv.ws}/agents/echo/r{i}") for i in range(8)]
        ready = await http.get(f"{srv.http}/readyz")
        assert ready.status_code == 200 and ready.json() == {"ready": True, "connections": 8}
        clients.append(await Client.connect(f"{srv.ws}/agents/echo/r8"))  # 9 of 10: 90 %
        ready = await http.get(f"{srv.http}/readyz")
        assert ready.status_code == 503 and ready.json()["reason"] == "near capacity"
        assert (await http.get(f"{srv.http}/healthz")).status_code == 200
        clients.append(await Client.connect(f"{srv.ws}/agents/echo/r9"))  # the last slot still takes a call
        await clients.pop().close()
        await clients.pop().close()
        await asyncio.sleep(0.1)
        assert (await http.get(f"{srv.http}/readyz")).status_code == 200
        for c in clients:
            await c.close()


async def test_idle_connection_is_closed_and_long_call_is_ended(tmp_path):
    async with LiveServer(app(tmp_path, idle_timeout_seconds=0.6, max_call_seconds=1.0)) as srv:
        idle = await Client.connect(f"{srv.ws}/agents/echo/idle")
        for _ in range(60):
            if idle.closed:
                break
            await asyncio.sleep(0.05)
        assert idle.closed is not None and idle.closed.rcvd.code == 4408
        assert idle.json("error")[-1]["code"] == "idle_timeout"
        long = await Client.connect(f"{srv.ws}/agents/echo/long")
        await long.start_call()
        for _ in range(40):  # keep talking (silence frames) so it is not idle
            await long.send(bytes(640))
            await asyncio.sleep(0.05)
        assert any(e["code"] == "call_too_long" for e in long.json("error"))
        assert long.json("status")[-1]["status"] == "idle"
        await long.close()


class Flood(Echo):
    async def on_turn(self, transcript, ctx):
        for i in range(400):
            yield f"word{i} "


async def test_a_client_that_does_not_read_is_closed_not_buffered_forever(tmp_path):
    tts = FakeTTS(seconds_per_char=0.5)  # ~16 kB of audio per character: the socket's buffers fill at once
    agents = dict(AGENTS, flood=Flood)
    server_app = create_app(agents, transcriber=FakeTranscriber(), tts=tts, db_path=str(tmp_path / "f.db"),
                            max_outbound_messages=50, max_outbound_bytes=2_000_000)
    async with LiveServer(server_app) as srv:
        ws = await websockets.connect(f"{srv.ws}/agents/flood/slow", max_queue=1, max_size=None)
        await ws.send(json.dumps({"type": "start_call"}))
        await asyncio.sleep(0.3)
        await ws.send(fake_speech_frame("final", "talk a lot"))
        await asyncio.sleep(2)  # we never read: the server's queue hits its bound
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        c = await Client.connect(f"{srv.ws}/agents/echo/fine")  # the server is fine
        await c.close()


async def test_tts_failure_mid_reply_keeps_the_text_tells_the_user_and_recovers(tmp_path):
    async with LiveServer(app(tmp_path, tts=FakeTTS(fail_on="boom"))) as srv:
        c = await Client.connect(f"{srv.ws}/agents/echo/tts")
        await c.start_call()
        await c.send(fake_speech_frame("final", "boom goes the dynamite"))
        end = await c.wait_for("transcript_end")
        assert end["text"] == "You said: boom goes the dynamite."  # the text still reaches the client
        assert (await c.wait_for("error"))["code"] == "tts_failed"
        await c.wait_for("status", status="listening", after=c.mark() - 1)
        mark = c.mark()
        await c.send(fake_speech_frame("final", "next please"))
        await c.wait_for("transcript_end", after=mark, text="You said: next please.")
        await c.wait_audio(1000)
        await c.close()


class DyingSession(FakeSession):
    def feed(self, pcm: bytes) -> None:
        super().feed(pcm)
        self.audio = getattr(self, "audio", b"") + pcm
        if pcm[:4] == b"DIE!" and self.can_die:
            self.options.on_event(TranscriberError("connection lost", fatal=True))


class DyingTranscriber(FakeTranscriber):
    async def create_session(self, options):
        session = DyingSession(options, self.default_text, True)
        session.can_die = not self.sessions  # only the first one dies
        self.sessions.append(session)
        return session


async def test_a_dead_stt_session_is_recreated_with_the_speech_since_the_last_final(tmp_path):
    stt = DyingTranscriber()
    async with LiveServer(app(tmp_path, transcriber=stt)) as srv:
        c = await Client.connect(f"{srv.ws}/agents/echo/stt")
        await c.start_call()
        await c.send(fake_speech_frame("final", "before"))
        await c.wait_for("transcript_end")
        spoken = [bytes([i]) * 640 for i in range(1, 6)]  # speech after the last final
        for frame in spoken:
            await c.send(frame)
        await c.send(b"DIE!" + bytes(636))
        await asyncio.sleep(0.3)
        assert len(stt.sessions) == 2
        assert all(frame in stt.sessions[1].audio for frame in spoken)  # replayed: no speech lost
        mark = c.mark()
        await c.send(fake_speech_frame("final", "after"))
        assert (await c.wait_for("transcript_end", after=mark))["text"] == "You said: after."
        assert [m["content"] for m in await history(srv, "echo", "stt") if m["role"] == "user"] == ["before", "after"]
        await c.close()


async def test_webrtc_signaling_goes_through_the_same_gate(tmp_path):
    async with LiveServer(app(tmp_path, authorize=bearer_token("s3cret"))) as srv:
        url = f"{srv.http}/agents/echo/w/webrtc"
        offer = {"sdp": "v=0", "type": "offer"}
        async with httpx.AsyncClient() as http:
            assert (await http.post(url, json=offer)).status_code == 401  # refused before the SDP is looked at
            r = await http.post(url, json=offer, params={"token": "s3cret"}, headers={"Origin": "http://evil.example"})
            assert r.status_code == 403
            r = await http.post(url, json=offer, params={"token": "s3cret"})
            assert r.status_code == 400  # admitted; then the bogus SDP is refused


async def test_a_stalled_tts_is_given_up_and_the_call_recovers(tmp_path):
    async with LiveServer(app(tmp_path, tts=FakeTTS(delay=2.0), tts_timeout_seconds=0.3)) as srv:
        c = await Client.connect(f"{srv.ws}/agents/echo/stall")
        await c.start_call()
        await c.send(fake_speech_frame("final", "anyone there"))
        assert (await c.wait_for("transcript_end"))["text"] == "You said: anyone there."
        err = await c.wait_for("error", code="tts_failed", timeout=3)
        assert "timed out" in err["message"]
        await c.wait_for("status", status="listening", after=c.mark() - 1, timeout=3)
        await c.close()
