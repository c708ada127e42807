"""Bad input gets a clear error or a documented close code; the server keeps serving others; history is intact."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from tests.harness import Client, LiveServer
from tests.test_engine import history, make_app
from voice.testing import fake_speech_frame

# every test runs on SQLite and on PostgreSQL (VOICE_DATABASE_URL: a fresh database per test; tests/pg.py)
pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("store_kind")]


@pytest.fixture
async def server(tmp_path):
    async with LiveServer(make_app(tmp_path, abuse_close_after=300)) as srv:
        yield srv


async def still_works(server, instance: str = "ok") -> None:
    c = await Client.connect(f"{server.ws}/agents/echo/{instance}")
    await c.send({"type": "text_message", "text": "still there?"})
    end = await c.wait_for("transcript_end")
    assert end["text"] == "You said: still there?."
    await c.close()


async def expect_error(c: Client, code: str) -> dict:
    err = await c.wait_for("error", code=code)
    assert err["message"]
    return err


@pytest.mark.parametrize(
    "frame,code",
    [
        ("{not json", "bad_json"),
        ("[1, 2, 3]", "bad_message"),
        ('"just a string"', "bad_message"),
        ('{"no_type": 1}', "bad_message"),
        ('{"type": 7}', "bad_message"),
        ('{"type": "launch_rockets"}', "unknown_type"),
        ('{"type": "text_message", "text": 5}', "bad_field"),
        ('{"type": "text_message"}', "bad_field"),
        ('{"type": "start_call", "preferred_format": ["pcm16"]}', "bad_field"),
        ('{"type": "playback_ack", "played_samples": -3}', "bad_field"),
        ('{"type": "playback_ack", "played_samples": "12"}', "bad_field"),
        ('{"type": "hello", "protocol_version": "one"}', "bad_field"),
        ("[" * 100_00 + "]" * 100_00, "too_large"),
        ("[" * 5000 + "]" * 5000, "bad_json"),
    ],
    ids=lambda v: v[:24] if isinstance(v, str) else v,
)
async def test_malformed_messages_get_an_error_and_the_connection_lives(server, frame, code):
    c = await Client.connect(f"{server.ws}/agents/echo/bad")
    await c.send(frame)
    await expect_error(c, code)
    await c.send({"type": "text_message", "text": "after"})
    assert (await c.wait_for("transcript_end"))["text"] == "You said: after."
    await c.close()


async def test_audio_before_start_call_is_ignored(server):
    c = await Client.connect(f"{server.ws}/agents/echo/early")
    for _ in range(20):
        await c.send(bytes(640))
    await c.send(fake_speech_frame("final", "too early"))
    await asyncio.sleep(0.2)
    assert c.json("transcript") == [] and c.json("error") == []
    await c.start_call()
    await c.send(fake_speech_frame("final", "now"))
    assert (await c.wait_for("transcript", role="user"))["text"] == "now"
    await c.close()


async def test_odd_length_and_oversized_frames_are_refused(server):
    c = await Client.connect(f"{server.ws}/agents/echo/frames")
    await c.start_call()
    await c.send(bytes(641))
    await expect_error(c, "odd_frame")
    await c.send(bytes(64 * 1024 + 2))
    await expect_error(c, "too_large")
    await c.send(fake_speech_frame("final", "fine again"))
    assert (await c.wait_for("transcript", role="user"))["text"] == "fine again"
    await c.close()


async def test_text_over_the_limit_is_refused(server):
    c = await Client.connect(f"{server.ws}/agents/echo/long")
    await c.send({"type": "text_message", "text": "x" * 4001})
    await expect_error(c, "too_long")
    assert c.json("transcript") == []
    await c.close()


async def test_unknown_agent_is_closed_with_4404(server):
    ws = await websockets.connect(f"{server.ws}/agents/nobody/x")
    first = json.loads(await ws.recv())
    assert first["type"] == "welcome"
    err = json.loads(await ws.recv())
    assert err["type"] == "error" and err["code"] == "unknown_agent"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd.code == 4404


async def test_a_message_flood_is_rate_limited_then_closed_and_others_are_served(server):
    keeper = await Client.connect(f"{server.ws}/agents/echo/victim")
    await keeper.send({"type": "text_message", "text": "keep me"})
    await keeper.wait_for("transcript_end")
    await asyncio.sleep(0.3)
    before = await history(server, "echo", "victim")

    flood = await Client.connect(f"{server.ws}/agents/echo/victim")
    for _ in range(3000):
        try:
            await flood.send({"type": "hello", "protocol_version": 1})
        except websockets.ConnectionClosed:
            break
    for _ in range(100):
        if flood.closed is not None:
            break
        await asyncio.sleep(0.05)
    assert flood.closed is not None and flood.closed.rcvd.code == 1008
    errors = flood.json("error")
    assert errors and all(e["code"] == "rate_limited" for e in errors)
    assert len(errors) < 20  # errors are themselves rate limited: a flood is not amplified

    await still_works(server, "other")
    await keeper.send({"type": "text_message", "text": "still here"})
    assert (await keeper.wait_for("transcript_end", text="You said: still here."))
    await asyncio.sleep(0.3)
    after = await history(server, "echo", "victim")
    assert after[: len(before)] == before
    await keeper.close()


async def test_an_audio_flood_faster_than_real_time_is_dropped(server):
    c = await Client.connect(f"{server.ws}/agents/echo/fast")
    await c.start_call()
    frame = bytes(32000)  # one second per frame
    for _ in range(60):  # a minute of audio at once: beyond the 30 s burst allowance
        await c.send(frame)
    await expect_error(c, "rate_limited")
    await still_works(server, "fast2")
    await c.close()


async def test_audio_streamed_right_after_start_call_is_not_lost(server):
    """A client that streams at once, without waiting for `status: listening`, loses nothing: audio is buffered
    from the moment start_call is read (it used to be dropped until the call's start task ran)."""
    c = await Client.connect(f"{server.ws}/agents/echo/eager")
    await c.ws.send(json.dumps({"type": "start_call"}))
    await c.ws.send(fake_speech_frame("final", "right away"))
    assert (await c.wait_for("transcript", role="user"))["text"] == "right away"
    assert (await c.wait_for("transcript_end"))["text"] == "You said: right away."
    await c.close()


async def test_an_odd_frame_right_after_start_call_gets_its_error(server):
    c = await Client.connect(f"{server.ws}/agents/echo/odd")
    await c.ws.send(json.dumps({"type": "start_call"}))
    await c.ws.send(bytes(641))
    await expect_error(c, "odd_frame")
    await c.wait_for("status", status="listening")
    await c.close()


@pytest.mark.parametrize("limit", ["99999999999999999999", "-1", "1000001", "ten"])
async def test_a_history_limit_out_of_range_is_a_400_not_a_500(server, limit):
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{server.http}/agents/echo/ok/messages", params={"limit": limit})
        assert r.status_code in (400, 422), r.text  # 422: not an integer at all (FastAPI's own check)
        ok = await http.get(f"{server.http}/agents/echo/ok/messages", params={"limit": "5"})
        assert ok.status_code == 200
