"""`<voice-agent transport="webrtc">` in real Chromium against the real app on loopback, with the real offline models
(Whisper, Piper): a fake microphone plays Piper speech; the call runs over WebRTC (mic and agent voice as Opus
tracks, messages on the data channel), or falls back to the WebSocket when the server has no WebRTC.

On one machine aioice skips 127.0.0.1 and Chromium hides its addresses behind mDNS names, so the server is patched
to gather loopback candidates (``use_loopback_ice``), Chromium runs with loopback/mDNS flags, and the widget's
client gets an ``offerFilter`` keeping only 127.0.0.1 candidates (via ``element.clientOptions``).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio

import tests.browser as browser  # noqa: E402
import voice.transports.webrtc.routes as transport_webrtc  # noqa: E402
from tests.browser import chromium, write_wav  # noqa: E402
from tests.harness import LiveServer  # noqa: E402
from tests.webrtc_peer import use_loopback_ice  # noqa: E402
from voice import create_app  # noqa: E402
from voice.demo import DEMO_AGENTS  # noqa: E402
from voice.transports.webrtc import mount_webrtc  # noqa: E402

from tests.speech import piper_speech, silence, wer
from voice.local import PiperTTS, WhisperTranscriber

STT = WhisperTranscriber()
TTS = PiperTTS(deterministic=True)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "what is the weather like in paris today"
AGENT = "voice-agent"
RTC_FLAGS = ["--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns"]

# Recreates the widget's client with a loopback-only offer, and records its transport changes.
SETUP_WIDGET = """() => {
  const el = document.querySelector("voice-agent");
  window.__changes = [];
  el.addEventListener("voice-client", (e) =>
    e.detail.client.addEventListener("transportchange", (ev) => window.__changes.push({ ...ev.detail })));
  el.clientOptions = {
    offerFilter: (sdp) => sdp.split("\\r\\n")
      .filter((line) => !line.startsWith("a=candidate") || line.includes(" 127.0.0.1 ")).join("\\r\\n"),
  };
}"""

STATE = """(sel) => { const el = document.querySelector(sel); const c = el.client;
  return { status: c.status, connection: c.connection, inCall: c.inCall, error: c.error,
           transport: c.transportInUse, reason: c.transportReason, attr: el.getAttribute("transport-in-use"),
           transcript: c.transcript.map((m) => ({ ...m })), stats: JSON.parse(JSON.stringify(c.stats)),
           changes: window.__changes }; }"""

# What arrived on the agent's track (the browser's own receive statistics).
INBOUND_AUDIO = """async (sel) => { const t = document.querySelector(sel).client.webrtc;
  let samples = 0, energy = 0;
  if (t?.pc) (await t.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") { samples = s.totalSamplesReceived || 0; energy = s.totalAudioEnergy || 0; } });
  return { samples, energy, playing: !!t?.audioElement && !t.audioElement.paused }; }"""


@pytest.fixture(scope="module", autouse=True)
def loopback_ice():
    undo = use_loopback_ice()  # aioice skips 127.0.0.1 otherwise, and peers on one machine never connect
    yield
    undo()


def make_app(db: Path, webrtc: str):
    """The demo agents on the real models; ``webrtc``: "on", "501" (aiortc missing) or "none" (no route)."""
    app = create_app(DEMO_AGENTS, transcriber=STT, tts=TTS, db_path=str(db), static_dir=ROOT / "web_client", webrtc=False)
    if webrtc == "on":
        assert mount_webrtc(app, max_peers=4)
    elif webrtc == "501":
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(transport_webrtc, "aiortc_available", lambda: False)
            assert mount_webrtc(app) is False
    return app


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rtc_server(tmp_path_factory):
    async with LiveServer(make_app(tmp_path_factory.mktemp("rtc") / "voice.db", "on")) as live:
        yield live


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory):
    # after the greeting has played: 4 s of silence, the question, then a long pause (the file loops)
    pcm = silence(4000) + piper_speech(QUESTION) + silence(12000)
    return write_wav(tmp_path_factory.mktemp("wav") / "question.wav", pcm)


@asynccontextmanager
async def rtc_chromium(wav: Path):
    """tests.browser.chromium, plus the flags WebRTC on loopback needs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(browser, "BASE_FLAGS", browser.BASE_FLAGS + RTC_FLAGS)
        async with chromium(wav) as page:
            yield page


async def open_widget(page, url: str, instance: str) -> None:
    await page.goto(f"{url}/?instance={instance}&transport=webrtc")
    await page.wait_for_function("document.querySelector('voice-agent')?.client?.connection === 'open'")
    assert await page.evaluate("document.querySelector('voice-agent').getAttribute('transport')") == "webrtc"
    await page.evaluate(SETUP_WIDGET)
    await page.wait_for_function("document.querySelector('voice-agent')?.client?.connection === 'open'")


async def wait_until(page, predicate, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = await page.evaluate(STATE, AGENT)
        if predicate(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out; last state: {state['status']} {state['transport']} {state['transcript']} "
                f"{state['error']} {state['changes']}"
            )
        await asyncio.sleep(0.2)


def users(state: dict) -> list[str]:
    return [m["text"] for m in state["transcript"] if m["role"] == "user"]


def replies(state: dict) -> list[str]:
    return [m["text"] for m in state["transcript"] if m["role"] == "assistant"]


def answered(state: dict) -> bool:
    return any("said" in r.lower() and "weather" in r.lower() for r in replies(state))


def sessions(server: LiveServer, instance: str) -> list:
    return [s for s in server.app.state.voice.webrtc.sessions if s.agent.instance_id == instance]


async def test_widget_call_over_webrtc(rtc_server, question_wav):
    async with rtc_chromium(question_wav) as page:
        await open_widget(page, rtc_server.http, "rtc-call")
        await page.click(f"{AGENT} button.call")
        state = await wait_until(page, answered, timeout=40)
        heard = [u for u in users(state) if "weather" in u.lower()][0]
        assert wer(QUESTION, heard) <= 0.25, heard
        assert state["transport"] == "webrtc" and state["attr"] == "webrtc", state["changes"]
        assert state["changes"] == [{"transport": "webrtc", "code": "connected", "reason": None}]
        assert state["stats"]["webrtc"]["opens"] == 1 and state["stats"]["webrtc"]["fallbacks"] == 0
        # the audio went on the tracks, not the socket
        assert state["stats"]["framesSent"] == 0 and state["stats"]["samplesReceived"] == 0, state["stats"]
        assert len(sessions(rtc_server, "rtc-call")) == 1
        # Chromium followed the answer: 40 ms microphone packets (a=ptime), through our jitter buffer and decoder
        session = sessions(rtc_server, "rtc-call")[0]
        tap = session.audio_in
        assert session.jitter is not None and tap.decoded_frames > 50 and tap.errors == 0
        assert tap.decoded_samples / tap.decoded_frames == 640, (tap.decoded_samples, tap.decoded_frames)
        assert session.jitter.order.lost == 0 and tap.concealed_samples == 0
        # ... and no more than wideband audio (maxplaybackrate=16000): the Opus TOC's config of each packet
        configs: set[int] = set()
        decode = tap.decoder.decode
        tap.decoder.decode = lambda packet: configs.add(packet[0] >> 3) or decode(packet)
        await asyncio.sleep(0.5)
        tap.decoder.decode = decode
        assert configs and all(c <= 11 or 16 <= c <= 23 for c in configs), configs  # SILK or CELT, NB to WB
        bubbles = await page.locator(f"{AGENT} ol.log li").all_inner_texts()
        assert any("weather" in b.lower() for b in bubbles)
        assert any("you said" in b.lower() for b in bubbles)
        # the agent's voice arrived on the remote track and is playing in the <audio> element
        audio = await page.evaluate(INBOUND_AUDIO, AGENT)
        assert audio["samples"] > 48_000 and audio["energy"] > 0 and audio["playing"], audio
        assert page.console_errors == []
        # end the call: the peer connection closes on both sides, the socket carries on
        await page.click(f"{AGENT} button.call")
        state = await wait_until(page, lambda s: not s["inCall"] and s["transport"] == "websocket", 5)
        assert state["connection"] == "open" and state["changes"][-1]["code"] == "call-ended"
        deadline = time.monotonic() + 5
        while sessions(rtc_server, "rtc-call") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not sessions(rtc_server, "rtc-call")
        await page.fill(f"{AGENT} input#text", "typed after the call")
        await page.press(f"{AGENT} input#text", "Enter")
        await wait_until(page, lambda s: "You said: typed after the call" in replies(s), 10)
        assert page.console_errors == []


@pytest.mark.parametrize("webrtc", ["501", "none"])
async def test_widget_falls_back_to_the_websocket(webrtc, tmp_path, question_wav):
    """No WebRTC on the server (aiortc missing → 501; no route at all → 404): the call runs over the WebSocket."""
    async with LiveServer(make_app(tmp_path / "voice.db", webrtc)) as server, rtc_chromium(question_wav) as page:
        await open_widget(page, server.http, f"fallback-{webrtc}")
        await page.click(f"{AGENT} button.call")
        state = await wait_until(page, lambda s: s["changes"] and s["status"] == "listening", 15)
        status = "501" if webrtc == "501" else "404"
        assert state["changes"][0]["transport"] == "websocket"
        assert state["changes"][0]["code"] == "unavailable" and status in state["changes"][0]["reason"]
        assert state["transport"] == "websocket" and status in state["reason"]
        assert state["stats"]["webrtc"]["opens"] == 0 and state["stats"]["webrtc"]["disabled"]
        if webrtc == "501":  # the whole call, once
            state = await wait_until(page, answered, timeout=40)
            heard = [u for u in users(state) if "weather" in u.lower()][0]
            assert wer(QUESTION, heard) <= 0.25, heard
        state = await wait_until(page, lambda s: s["stats"]["playedSamples"] > 16000, 15)  # the PCM player played
        assert state["stats"]["framesSent"] > 0 and state["error"] is None
        # the browser logs the refused signaling request; nothing else may go wrong
        unexpected = [e for e in page.console_errors if not ("Failed to load resource" in e and status in e)]
        assert unexpected == []
