"""The WebRTC transport end to end: a Python aiortc peer (tests/webrtc_peer.py) against the real app on loopback.

Voice tests use the real offline models (Whisper tiny.en, Piper): Piper speech goes out as an Opus track, the
transcript comes back on the data channel, the reply comes back as audio on the track and is transcribed again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import pytest_asyncio

from tests.harness import LiveServer
from tests.webrtc_peer import PeerRefused, WebRTCTestPeer, use_loopback_ice
from voice import AudioChunk, create_app
from voice.demo import EchoAssistant
from voice.providers.base import TranscriberOptions
from voice.testing import FakeTranscriber, FakeTTS
from voice.transports.webrtc import mount_webrtc, parse_ice_servers
from voice.transports.webrtc.media import AgentAudioTrack

from tests.speech import Recorder, feed, piper_speech, silence, wer
from voice.local import PiperTTS, WhisperTranscriber

STT = WhisperTranscriber()
TTS = PiperTTS(deterministic=True)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parent.parent
GREETING = "Hi! Say something and I will repeat it."
AGENTS = {"assistant": EchoAssistant}


@pytest.fixture(scope="module", autouse=True)
def loopback_ice():
    undo = use_loopback_ice()  # aioice skips 127.0.0.1 otherwise, and peers on one machine never connect
    yield
    undo()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("webrtc") / "voice.db")
    # the web client is served too: its static mount at "/" must not shadow the WebRTC routes mounted after it
    app = create_app(AGENTS, transcriber=STT, tts=TTS, db_path=db, static_dir=ROOT / "web_client", webrtc=False)
    assert mount_webrtc(app, max_peers=8)
    async with LiveServer(app) as live:
        live.voice = app.state.voice
        yield live


def gateway(server):
    return server.voice.webrtc


def session_of(server, instance: str):
    return next(s for s in gateway(server).sessions if s.agent.instance_id == instance)


async def history(server, instance: str) -> list[dict]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{server.http}/agents/assistant/{instance}/messages")
        r.raise_for_status()
        return r.json()["messages"]


async def until(predicate, timeout: float, what: str) -> float:
    """Poll ``predicate`` until it holds; the seconds it took."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


async def transcribe(pcm: bytes) -> str:
    recorder = Recorder()
    session = await STT.create_session(TranscriberOptions(on_event=recorder))
    try:
        await feed(session, pcm + silence(1500))
        await recorder.wait_for(lambda r: bool(r.finals), timeout=15)
        await asyncio.sleep(0.5)  # a later sentence's final
        return " ".join(f.text for f in recorder.finals)
    finally:
        await session.close()


async def wait_greeting_played(server, peer: WebRTCTestPeer, instance: str) -> None:
    await peer.wait_for("transcript_end", text=GREETING, timeout=15)
    session = session_of(server, instance)
    # the turn, not just the audio queue: Piper's sentences can leave a gap in the queue mid-greeting
    await until(lambda: session.call.turn is None and not session.output.is_playing(), 10, "greeting played out")


async def test_voice_round_trip(server):
    """Piper speech as Opus → transcript on the data channel → the reply's audio on the track says the reply."""
    peer = await WebRTCTestPeer(server.http, "assistant", "round-trip").connect()
    try:
        await peer.start_call()
        config = peer.json("audio_config")[0]
        assert config["transport"] == "webrtc" and config["sampleRate"] == 48_000
        await wait_greeting_played(server, peer, "round-trip")
        said = "What is the weather like in Paris today?"
        mark = peer.mark()
        peer.mic.play(piper_speech(said) + silence(1200))
        user = await peer.wait_for("transcript", after=mark, role="user", timeout=20)
        assert wer(said, user["text"]) <= 0.2, user["text"]
        reply_started = time.monotonic()
        end = await peer.wait_for("transcript_end", after=mark, timeout=15)
        assert end["text"] == f"You said: {user['text']}"
        metrics = await peer.wait_for("metrics", after=mark, timeout=10)
        assert metrics["voice_to_voice_ms"] is not None
        output = session_of(server, "round-trip").output
        await until(lambda: not output.is_playing(), 15, "reply played out")
        await asyncio.sleep(0.3)  # network + the client's jitter buffer
        heard = await transcribe(peer.received_since(reply_started))
        assert wer(end["text"], heard) <= 0.25, (end["text"], heard)
        messages = await history(server, "round-trip")
        assert [m["role"] for m in messages] == ["assistant", "user", "assistant"]
        assert not messages[-1]["interrupted"]
    finally:
        await peer.close()


LONG = (
    "The first sentence is short. The second sentence is a little bit longer than the first one. "
    "The third sentence should never be heard by anyone at all."
)


async def test_barge_in(server):
    """Talking over a reply: playback_interrupt + listening on the channel; history keeps only the heard part."""
    peer = await WebRTCTestPeer(server.http, "assistant", "barge").connect()
    try:
        await peer.start_call()
        await wait_greeting_played(server, peer, "barge")
        session = session_of(server, "barge")
        mark = peer.mark()
        peer.send({"type": "text_message", "text": LONG})
        await peer.wait_for("status", after=mark, status="speaking", timeout=10)
        start = session.output.played()
        await until(lambda: session.output.played() - start >= 48_000 * 3.0, 8, "reply playing")
        heard_positions: list[int] = []
        clear = session.output.clear

        async def recording_clear() -> int:
            heard_positions.append(await clear())
            return heard_positions[-1]

        session.output.clear = recording_clear
        mark = peer.mark()
        talk_at = time.monotonic()
        peer.mic.play(piper_speech("Stop, tell me a story instead.") + silence(1000))
        await peer.wait_for("playback_interrupt", after=mark, timeout=5)
        stopped = time.monotonic()
        assert stopped - talk_at < 1.0  # ~0.1 s of speech for the VAD, plus its chunking
        await peer.wait_for("status", after=mark, status="listening", timeout=5)
        user = await peer.wait_for("transcript", after=mark, role="user", timeout=15)
        user_at = time.monotonic()
        assert "story" in user["text"].lower()
        # the reply stopped at the client at once: no agent audio from shortly after the interrupt to the next reply
        assert peer.loud_seconds(since=stopped + 0.25) - peer.loud_seconds(since=user_at) == 0
        # heard = what the track had emitted when the user barged in
        assert len(heard_positions) == 1
        heard_seconds = (heard_positions[0] - start) / 48_000
        assert 3.0 <= heard_seconds <= 3.0 + (stopped - talk_at) + 0.3, heard_seconds
        messages = await history(server, "barge")
        assert [m["role"] for m in messages] == ["assistant", "user", "assistant", "user"]
        reply = messages[2]
        assert reply["interrupted"] is True
        heard, full = reply["content"].split(), f"You said: {LONG}".split()
        assert heard == full[: len(heard)] and "first" in heard and "third" not in heard, reply["content"]
        assert messages[3]["content"] == user["text"]
    finally:
        await peer.close()


async def test_text_message_over_data_channel(server):
    peer = await WebRTCTestPeer(server.http, "assistant", "text").connect()
    try:
        await peer.wait_for("status", status="idle")
        assert [m["type"] for m in peer.json()] == ["welcome", "status"]
        peer.send({"type": "text_message", "text": "hello over the data channel"})
        await peer.wait_for("transcript", role="user", text="hello over the data channel")
        end = await peer.wait_for("transcript_end")
        assert end["text"] == "You said: hello over the data channel"
        peer.send("{not json")
        error = await peer.wait_for("error")
        assert error["code"] == "bad_json"
        peer.send({"type": "playback_ack", "played_samples": 123})  # accepted, ignored
        await asyncio.sleep(0.2)
        assert len(peer.json("error")) == 1
    finally:
        await peer.close()


async def test_auto_start_and_hangup(server):
    """``start_call: true`` in the offer starts the call when the channel opens; hangup tells the client."""
    peer = await WebRTCTestPeer(server.http, "assistant", "auto", send_audio=False).connect(start_call=True)
    try:
        await peer.wait_for("audio_config")
        await peer.wait_for("status", status="listening")
        session = session_of(server, "auto")
        await session.call.hangup()
        closing = await peer.wait_for("close")
        assert closing["code"] == 1000
        await until(lambda: session not in gateway(server).sessions, 3, "session gone")
    finally:
        await peer.close()


@pytest.mark.parametrize("how", ["close", "vanish"])
async def test_peer_gone_mid_reply_frees_everything(server, how):
    """A closed tab ends the call at once; a peer that silently drops off within media_timeout (5 s) + a bit."""
    await until(lambda: not gateway(server).sessions, 5, "no leftover sessions")
    tasks, threads = len(asyncio.all_tasks()), threading.active_count()
    assert not AgentAudioTrack.live
    instance = f"gone-{how}"
    peer = await WebRTCTestPeer(server.http, "assistant", instance).connect()
    await peer.start_call()
    await peer.wait_for("status", status="speaking", timeout=10)
    session = session_of(server, instance)
    call = session.call
    assert len(AgentAudioTrack.live) == 1 and session.output.is_playing()
    # the silence watchdog is armed by the first audio frame from the peer
    await until(lambda: session.last_media is not None, 2, "the peer's audio arriving")
    if how == "close":
        await peer.close()
        took = await until(lambda: call.closed, 2, "call ended after the client closed")
    else:
        peer.vanish()
        took = await until(lambda: call.closed, 8, "call ended after the client vanished")
        assert 4.0 < took < 7.0
        await peer.close()
    await until(lambda: session not in gateway(server).sessions, 3, "session released")
    assert session.pc.connectionState == "closed"
    assert ("assistant", instance) not in server.voice.runtime._instances
    assert not AgentAudioTrack.live
    await until(lambda: len(asyncio.all_tasks()) <= tasks, 5, f"tasks back to {tasks}")
    await until(lambda: threading.active_count() <= threads, 5, f"threads back to {threads}")


async def test_http_errors(server, tmp_path):
    url = f"{server.http}/agents/assistant/errors/webrtc"
    async with httpx.AsyncClient() as http:
        r = await http.post(url, content=b"{nope")
        assert r.status_code == 400 and "JSON" in r.json()["detail"]
        r = await http.post(url, json={"sdp": "v=0", "type": "answer"})
        assert r.status_code == 400 and "offer" in r.json()["detail"]
        r = await http.post(url, json={"type": "offer"})
        assert r.status_code == 400 and "sdp" in r.json()["detail"]
        r = await http.post(url, json={"sdp": "hello", "type": "offer"})
        assert r.status_code == 400 and "no audio" in r.json()["detail"]
        r = await http.post(url, json={"sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "type": "offer"})
        assert r.status_code == 400 and "could not be applied" in r.json()["detail"]
        r = await http.post(f"{server.http}/agents/nobody/x/webrtc", json={"sdp": "v=0", "type": "offer"})
        assert r.status_code == 404 and "unknown agent" in r.json()["detail"]
        r = await http.get(url)
        assert r.status_code == 200 and r.json() == {"iceServers": []}
    assert not gateway(server).sessions and ("assistant", "errors") not in server.voice.runtime._instances

    # over the limit: a second app allowing one peer (fake providers: no models needed)
    app = create_app(AGENTS, transcriber=FakeTranscriber(), tts=FakeTTS(), db_path=str(tmp_path / "v.db"), webrtc=False)
    mount_webrtc(app, max_peers=1)
    async with LiveServer(app) as small:
        first = await WebRTCTestPeer(small.http, "assistant", "a").connect()
        with pytest.raises(PeerRefused) as refused:
            await WebRTCTestPeer(small.http, "assistant", "b").connect()
        assert refused.value.status == 503 and "too many" in refused.value.detail
        await first.close()
        await until(lambda: not app.state.voice.webrtc.sessions, 3, "slot freed")
        again = await WebRTCTestPeer(small.http, "assistant", "c").connect()
    # the server stopped with a peer connected: it was told, and closed
    assert again.closed_message == {"type": "close", "code": 1001, "reason": "server shutting down"}
    assert not app.state.voice.webrtc.sessions and not AgentAudioTrack.live
    await again.close()


async def test_without_aiortc(monkeypatch, tmp_path):
    """The core never imports aiortc; without it the route answers 501 with the install hint."""
    import sys

    code = (
        "import sys; sys.modules['aiortc'] = None; import voice.transports.webrtc as t, voice.server; "
        "assert not t.aiortc_available(); assert not [m for m in sys.modules if m.startswith('aiortc') and sys.modules[m]]"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=ROOT)
    assert await proc.wait() == 0
    import voice.transports.webrtc.routes as transport

    monkeypatch.setattr(transport, "aiortc_available", lambda: False)
    app = create_app(AGENTS, transcriber=FakeTranscriber(), tts=FakeTTS(), db_path=str(tmp_path / "v.db"), webrtc=False)
    assert mount_webrtc(app) is False
    async with LiveServer(app) as srv, httpx.AsyncClient() as http:
        r = await http.post(f"{srv.http}/agents/assistant/x/webrtc", json={"sdp": "v=0", "type": "offer"})
        assert r.status_code == 501 and "voice[webrtc]" in r.json()["detail"]


async def test_data_channel_only_peer(server):
    """No audio m-line at all: the call works over the data channel; spoken replies do not wait for a listener."""
    peer = WebRTCTestPeer(server.http, "assistant", "data-only", send_audio=False, receive_audio=False)
    await peer.connect()
    try:
        await peer.start_call()
        await peer.wait_for("transcript_end", text=GREETING)
        session = session_of(server, "data-only")
        assert not session.output.attached
        await until(lambda: session.call.turn is None, 5, "greeting done")
        messages = await history(server, "data-only")
        assert messages[0]["content"] == GREETING and not messages[0]["interrupted"]
    finally:
        await peer.close()


async def test_ice_server_config():
    assert parse_ice_servers(None) == []
    assert parse_ice_servers("stun:stun.example.org:3478") == [{"urls": "stun:stun.example.org:3478"}]
    value = '[{"urls": ["turn:t.example.org"], "username": "u", "credential": "p"}, "stun:s.example.org"]'
    assert parse_ice_servers(value) == [
        {"urls": "turn:t.example.org", "username": "u", "credential": "p"},
        {"urls": "stun:s.example.org"},
    ]
    with pytest.raises(ValueError):
        parse_ice_servers('[{"urls": "http://nope"}]')
    with pytest.raises(ValueError):
        parse_ice_servers("[not json")


BROWSER_SETUP = """async ({agent, instance}) => {
  const { WebRTCTransport } = await import("/client/lib/webrtc-transport.js");
  const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
  // loopback only: drop Chromium's other host candidates (this machine's LAN address) from the offer
  const offerFilter = (sdp) => sdp.split("\\r\\n")
    .filter((line) => !line.startsWith("a=candidate") || line.includes(" 127.0.0.1 ")).join("\\r\\n");
  const t = new WebRTCTransport({ offerFilter });
  window.rtc = { t, messages: [], closed: null, opened: false };
  t.onopen = () => { window.rtc.opened = true; };
  t.onmessage = (m) => window.rtc.messages.push(m);
  t.onclose = (info) => { window.rtc.closed = info; };
  t.attachMicrophone(mic);
  await t.connect(location.origin, agent, instance);
  t.send({ type: "start_call" });
  return t.connected;
}"""

BROWSER_STATE = """async () => {
  const stats = window.rtc.t.pc ? await window.rtc.t.pc.getStats() : new Map();
  let energy = 0, samples = 0;
  stats.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "audio") {
    energy = s.totalAudioEnergy || 0; samples = s.totalSamplesReceived || 0; } });
  return { messages: window.rtc.messages, closed: window.rtc.closed, opened: window.rtc.opened, energy, samples };
}"""


async def test_browser_transport_in_chromium(server, tmp_path):
    """web_client/lib/webrtc-transport.js in real Chromium: a fake microphone plays Piper speech; the transcript
    and the reply come back on the data channel and the agent's voice on the track; close() ends the call."""
    import playwright.async_api as playwright

    from tests.browser import BASE_FLAGS, CHROMIUM, write_wav

    said = "What is the weather like in Paris today?"
    wav = write_wav(tmp_path / "mic.wav", silence(4500) + piper_speech(said) + silence(20000))
    flags = BASE_FLAGS + [
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
    ]
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=flags, headless=True)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{server.http}/healthz")
            assert await page.evaluate(BROWSER_SETUP, {"agent": "assistant", "instance": "browser"})
            deadline = time.monotonic() + 30
            while True:
                state = await page.evaluate(BROWSER_STATE)
                kinds = [m["type"] for m in state["messages"]]
                if "metrics" in kinds or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.25)
            assert state["opened"] and kinds[:2] == ["welcome", "status"], kinds
            assert "audio_config" in kinds, kinds
            users = [m["text"] for m in state["messages"] if m["type"] == "transcript" and m["role"] == "user"]
            assert users and wer(said, users[0]) <= 0.2, (users, kinds)
            ends = [m["text"] for m in state["messages"] if m["type"] == "transcript_end"]
            assert f"You said: {users[0]}" in ends
            await asyncio.sleep(1.0)
            state = await page.evaluate(BROWSER_STATE)
            assert state["samples"] > 48_000 and state["energy"] > 0.01, state  # the agent's voice arrived
            session = session_of(server, "browser")
            await page.evaluate("() => window.rtc.t.close()")
            await until(lambda: session.call.closed and session not in gateway(server).sessions, 3, "call ended")
            state = await page.evaluate(BROWSER_STATE)
            assert state["closed"]["code"] == 1000 and not errors, (state["closed"], errors)
        finally:
            await browser.close()


async def test_the_track_holds_its_queue_while_paused_and_plays_on_from_the_same_sample():
    from voice.transports.webrtc.media import FRAME_SAMPLES, WebRTCOutput

    out = WebRTCOutput()
    out.attach()
    samples = (np.arange(FRAME_SAMPLES * 3) % 30000).astype("<i2")
    await out.write(AudioChunk(samples.tobytes(), 48_000))
    first, audible = out.take_frame()
    assert audible and first == samples[:FRAME_SAMPLES].tobytes()
    out.pause()
    held, audible = out.take_frame()
    assert not audible and held == bytes(len(held)) and out.played() == FRAME_SAMPLES  # silence, nothing consumed
    assert out.is_playing()
    out.resume()
    second, audible = out.take_frame()
    assert audible and second == samples[FRAME_SAMPLES : 2 * FRAME_SAMPLES].tobytes()
