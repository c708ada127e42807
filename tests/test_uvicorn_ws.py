"""voice's uvicorn WebSocket protocol (voice.transports.uvicorn_ws): binary frames may skip the ASGI queue, but the
order of everything a client sends is kept, a failing sink falls back to ``receive``, and the stock protocols
(what other servers give) still carry whole calls."""

import asyncio
import logging

import pytest
import websockets

from tests.harness import Client, LiveServer
from voice import VoiceAgent, create_app
from voice.testing import FakeTranscriber, FakeTTS, fake_speech_frame
from voice.transports.uvicorn_ws import EXTENSION, VoiceWebSocketProtocol


def recording_app(mode: str):
    """An ASGI app that logs, in order, every message it gets and by which path; text frames are handled slowly
    (50 ms), and the protocol must hold frames that arrive meanwhile behind them. ``mode``: "take" (the sink takes
    frames), "decline" (it returns False) or "raise"."""
    log: list[tuple[str, str]] = []

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})

        def sink(data: bytes) -> bool:
            if mode == "raise":
                raise RuntimeError("a bug in the sink")
            if mode == "decline":
                return False
            log.append(("direct", data.decode()))
            return True

        frames = scope["extensions"].get(EXTENSION)
        if frames is not None:
            frames["set_sink"](sink)
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                log.append(("receive", message["bytes"].decode()))
                continue
            await asyncio.sleep(0.05)  # handled (logged) only once its work is done
            log.append(("receive", message["text"]))
            if message["text"] == "done":
                await send({"type": "websocket.send", "text": "ok"})

    return app, log


async def exchange(server: LiveServer) -> None:
    async with websockets.connect(server.ws) as ws:
        for i in range(5):  # text, frames while the app handles it (nothing queued), then frames alone, paced
            await ws.send(f"t{i}")
            await asyncio.sleep(0.02)  # the app is busy with the text for 50 ms
            for j in range(3):
                await ws.send(f"{i}.{j}".encode())
            await asyncio.sleep(0.1)
            for j in range(3, 6):
                await ws.send(f"{i}.{j}".encode())
                await asyncio.sleep(0.01)
        await ws.send("done")
        assert await asyncio.wait_for(ws.recv(), 5) == "ok"


def expected_order() -> list[str]:
    return [item for i in range(5) for item in [f"t{i}", *(f"{i}.{j}" for j in range(6))]] + ["done"]


@pytest.mark.parametrize("mode", ["take", "decline", "raise"])
async def test_frames_keep_their_order_whichever_path_they_take(mode, caplog):
    app, log = recording_app(mode)
    with caplog.at_level(logging.ERROR, logger="voice.ws"):
        async with LiveServer(app) as server:
            await exchange(server)
    assert [item for _, item in log] == expected_order()
    direct = [item for path, item in log if path == "direct"]
    if mode == "take":  # frames paced behind a handled text go direct; those sent while it is handled do not
        assert {f"{i}.{j}" for i in range(5) for j in range(3, 6)} <= set(direct)
    else:
        assert direct == []
    assert ("the frame sink failed" in caplog.text) == (mode == "raise")


async def test_the_stock_protocol_has_no_extension_and_frames_come_through_receive():
    app, log = recording_app("take")
    async with LiveServer(app, ws="websockets-sansio") as server:
        await exchange(server)
    assert log == [("receive", item) for item in expected_order()]


class Echo(VoiceAgent):
    async def on_turn(self, transcript, ctx):
        return f"You said: {transcript}."


@pytest.mark.parametrize("ws", [VoiceWebSocketProtocol, "websockets-sansio"])
async def test_audio_sent_right_behind_start_call_is_heard_on_every_protocol(ws, tmp_path):
    """A client that starts streaming at once, without waiting for ``listening``: nothing it said is lost, and the
    reply comes back, on voice's protocol and on uvicorn's stock ones."""
    app = create_app({"echo": Echo}, transcriber=FakeTranscriber(), tts=FakeTTS(seconds_per_char=0.01),
                     db_path=str(tmp_path / "voice.db"))
    async with LiveServer(app, ws=ws) as server:
        c = await Client.connect(f"{server.ws}/agents/echo/eager")
        await c.send({"type": "start_call"})
        await c.send(fake_speech_frame("start"))
        await c.send(fake_speech_frame("final", "right away"))
        for _ in range(50):  # then a second of ordinary audio, paced, on the direct path
            await c.send(bytes(640))
            await asyncio.sleep(0.02)
        mark = c.mark()
        await c.send(fake_speech_frame("final", "and again"))
        first = await c.wait_for("transcript_end")
        assert first["text"] == "You said: right away."
        second = await c.wait_for("transcript_end", after=mark)
        assert second["text"] == "You said: and again."
        assert len(c.audio()) > 0
        await c.close()


@pytest.mark.parametrize("ws", [VoiceWebSocketProtocol, "websockets-sansio"])
async def test_audio_sent_right_behind_end_call_is_not_heard(ws, tmp_path):
    """Frames behind a message wait until it has been handled: speech sent after ``end_call`` is not transcribed
    into the ended call, whichever path the frames take."""
    app = create_app({"echo": Echo}, transcriber=FakeTranscriber(), tts=FakeTTS(seconds_per_char=0.01),
                     db_path=str(tmp_path / "voice.db"))
    async with LiveServer(app, ws=ws) as server:
        c = await Client.connect(f"{server.ws}/agents/echo/late")
        await c.start_call()
        for _ in range(5):
            await c.send({"type": "end_call"})
            for _ in range(3):
                await c.send(fake_speech_frame("final", "too late"))
            await c.wait_for("status", status="idle", after=c.mark() - 1)
            await c.start_call()
        await c.send(fake_speech_frame("final", "in time"))
        reply = await c.wait_for("transcript_end")
        assert reply["text"] == "You said: in time."
        users = [m["text"] for m in c.json("transcript") if m.get("role") == "user"]
        assert users == ["in time"]
        await c.close()

