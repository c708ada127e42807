"""The transcript and speech hooks, as a caller experiences them, on all three transports (WebSocket, WebRTC,
Twilio): ``after_transcribe`` rewrites or drops what the user said, ``before_synthesize`` rewrites or skips a
sentence, ``after_synthesize`` replaces or drops its audio, and gets the same PCM (the TTS's own rate) on every
wire. A tone-driven STT (each burst of sound is the next scripted utterance) and a tone TTS keep it deterministic;
the audio goes through the real wires (Opus, μ-law)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import numpy as np
import pytest

from adapters.twilio import mount_twilio
from tests.harness import Client, LiveServer, free_port
from tests.test_twilio import TOKEN, place_call
from tests.twilio_sim import ToneTranscriber, silence, tone
from tests.webrtc_peer import WebRTCTestPeer, use_loopback_ice
from voice import AudioChunk, TurnContext, VoiceAgent, create_app
from voice.testing import FakeTTS
from voice.transports.webrtc import mount_webrtc

TTS_RATE = 24_000
SECONDS_PER_CHAR = 0.02
REWRITTEN = "x" * 50  # what before_synthesize makes of every spoken sentence: 1.0 s of audio
REPLACEMENT_HZ = 1000.0  # after_synthesize's audio, instead of the TTS's 440 Hz

REPLY = (
    "Heard you say that you like the color red, thank you for telling me. "
    "This sentence is a secret and the caller must never hear it. "
    "These are the final words and their audio is dropped."
)


class Hooked(VoiceAgent):
    turns: list[str] = []
    synthesized: list[tuple[str, str, int, float]] = []  # (text, encoding, rate, seconds) given to after_synthesize

    async def after_transcribe(self, text: str, call: Any) -> str | None:
        if "ignore" in text:
            return None  # dropped: not a turn
        return text.replace("colour", "color")

    async def on_turn(self, transcript: str, ctx: TurnContext) -> str:
        Hooked.turns.append(transcript)
        return REPLY

    async def before_synthesize(self, text: str, call: Any) -> str | None:
        if "secret" in text:
            return None  # skipped: never synthesized
        return REWRITTEN

    async def after_synthesize(self, audio: AudioChunk, text: str, call: Any) -> AudioChunk | None:
        seconds = len(audio.data) / 2 / audio.sample_rate
        Hooked.synthesized.append((text, audio.encoding, audio.sample_rate, seconds))
        if "final words" in text:
            return None  # dropped: not sent
        n = len(audio.data) // 2
        t = np.arange(n) / audio.sample_rate
        return AudioChunk((np.sin(2 * np.pi * REPLACEMENT_HZ * t) * 8000).astype("<i2").tobytes(), audio.sample_rate)


@pytest.fixture(scope="module", autouse=True)
def loopback_ice():
    undo = use_loopback_ice()
    yield
    undo()


@pytest.fixture
async def server(tmp_path):
    Hooked.turns.clear()
    Hooked.synthesized.clear()
    port = free_port()
    stt = ToneTranscriber()
    app = create_app({"hooked": Hooked}, transcriber=stt, tts=FakeTTS(TTS_RATE, SECONDS_PER_CHAR),
                     db_path=str(tmp_path / "v.db"), webrtc=False)
    assert mount_webrtc(app)
    mount_twilio(app, agent="hooked", public_url=f"http://127.0.0.1:{port}", auth_token=TOKEN)
    async with LiveServer(app, port=port) as live:
        live.stt = stt
        yield live


class WebSocketCaller:
    rate = 16_000

    async def open(self, srv: LiveServer) -> str:
        self.client = await Client.connect(f"{srv.ws}/agents/hooked/ws-caller")
        await self.client.start_call()
        return "ws-caller"

    async def say(self) -> None:
        pcm = tone(300, rate=16_000) + silence(500, rate=16_000)
        for i in range(0, len(pcm), 640):
            await self.client.send(pcm[i : i + 640])
            await asyncio.sleep(0.02)

    def pcm(self) -> np.ndarray:
        return np.frombuffer(self.client.audio(), dtype="<i2")

    async def close(self) -> None:
        await self.client.close()


class WebRTCCaller:
    rate = 16_000

    async def open(self, srv: LiveServer) -> str:
        self.peer = await WebRTCTestPeer(srv.http, "hooked", "webrtc-caller").connect()
        await self.peer.start_call()
        return "webrtc-caller"

    async def say(self) -> None:
        self.peer.mic.play(tone(300, rate=16_000) + silence(500, rate=16_000))
        await asyncio.sleep(0.9)

    def pcm(self) -> np.ndarray:
        return np.frombuffer(b"".join(pcm for _, pcm in self.peer.audio), dtype="<i2")

    async def close(self) -> None:
        await self.peer.close()


class TwilioCaller:
    rate = 8_000

    async def open(self, srv: LiveServer) -> str:
        self.sim = await place_call(srv, realtime=True)
        return self.sim.call_sid

    async def say(self) -> None:
        await self.sim.say(tone(300), then_silence_ms=500)

    def pcm(self) -> np.ndarray:
        return self.sim.received_pcm()

    async def close(self) -> None:
        await self.sim.stop()


def loud_frames(pcm: np.ndarray, rate: int) -> np.ndarray:
    """The 20 ms frames of ``pcm`` that carry sound (not silence), concatenated."""
    n = rate // 50
    frames = pcm[: len(pcm) // n * n].astype(np.float64).reshape(-1, n)
    return frames[np.sqrt((frames**2).mean(axis=1)) > 1000].reshape(-1)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


async def settled(caller: Any, timeout: float = 15.0) -> np.ndarray:
    """The caller's received audio once it has had sound and then stopped growing for a second."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        pcm = caller.pcm()
        loud = len(loud_frames(pcm, caller.rate))
        if loud != last:
            last, since = loud, time.monotonic()
        elif loud and time.monotonic() - since > 1.0:
            return pcm
        await asyncio.sleep(0.05)
    raise AssertionError(f"no reply audio that settled within {timeout}s ({last} loud samples)")


@pytest.mark.parametrize("caller_type", [WebSocketCaller, WebRTCCaller, TwilioCaller], ids=["websocket", "webrtc", "twilio"])
async def test_hooks_rewrite_drop_and_replace_what_the_caller_hears(server, caller_type):
    caller = caller_type()
    instance = await caller.open(server)
    try:
        server.stt.script.extend(["please ignore this", "i like the colour red"])
        await caller.say()  # after_transcribe drops it: no turn, no reply
        await asyncio.sleep(1.0)
        assert Hooked.turns == [] and len(loud_frames(caller.pcm(), caller.rate)) == 0
        await caller.say()  # after_transcribe rewrites it
        pcm = await settled(caller)
    finally:
        await caller.close()

    assert Hooked.turns == ["i like the color red"]
    async with httpx.AsyncClient() as http:
        messages = (await http.get(f"{server.http}/agents/hooked/{instance}/messages")).json()["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["i like the color red"]

    # after_synthesize saw every sentence but the skipped one, rewritten (1.0 s each), as PCM at the TTS's own rate
    assert Hooked.synthesized, "after_synthesize never ran"
    assert not any("secret" in text for text, *_ in Hooked.synthesized)
    assert any("final words" in text for text, *_ in Hooked.synthesized)
    assert {(encoding, rate) for _, encoding, rate, _ in Hooked.synthesized} == {("pcm16", TTS_RATE)}
    per_sentence: dict[str, float] = {}
    for text, _, _, seconds in Hooked.synthesized:
        per_sentence[text] = per_sentence.get(text, 0.0) + seconds
    assert all(abs(s - len(REWRITTEN) * SECONDS_PER_CHAR) < 0.05 for s in per_sentence.values()), per_sentence

    # the caller heard the replacement tone, for the sentences that were neither skipped nor dropped
    heard = loud_frames(pcm, caller.rate)
    expected = sum(s for text, s in per_sentence.items() if "final words" not in text)
    assert abs(len(heard) / caller.rate - expected) < 0.2, (len(heard) / caller.rate, expected)
    assert abs(dominant_hz(heard, caller.rate) - REPLACEMENT_HZ) < 30
