"""A phone call with the real offline models: Piper speech goes in as μ-law 8 kHz through the Twilio simulator in
real time, Whisper transcribes it, the agent's Piper reply comes back as μ-law and is transcribed back; then a
spoken barge-in must ``clear`` Twilio's buffer quickly and leave only the heard words in history."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from adapters.twilio import mount_twilio
from voice.audio import g711
from tests.harness import LiveServer, free_port
from tests.test_twilio import TOKEN, history, place_call
from voice import TurnContext, VoiceAgent, create_app
from voice.reply import SentenceChunker
from voice.providers.base import Final, TranscriberOptions

import tests.speech as speech  # noqa: E402 - the real models are part of the suite: missing ones must fail, not skip
import voice.local as local  # noqa: E402

HEARD: list[str] = []
STORY = (
    "Once upon a time there was a lighthouse keeper who lived alone on a small rocky island. "
    "Every evening he climbed the long spiral staircase to light the great lamp at the top. "
    "Ships from every corner of the world relied on that light to find their way home safely. "
    "One stormy night the lamp flickered and went out just as a fishing boat approached the rocks."
)


class Receptionist(VoiceAgent):
    async def on_turn(self, transcript: str, ctx: TurnContext):
        HEARD.append(transcript)
        if "story" in transcript.lower():
            return STORY
        return "Your table for two is booked for seven o'clock tonight."


@pytest.fixture
def models():
    return local.WhisperTranscriber(), local.PiperTTS()


async def transcribe(stt, pcm8k: bytes) -> str:
    """Transcribe 8 kHz audio (what the caller heard) with a fresh session."""
    finals: list[str] = []
    session = await stt.create_session(
        TranscriberOptions(on_event=lambda e: finals.append(e.text) if isinstance(e, Final) else None, sample_rate=8000)
    )
    await session.wait_until_ready()
    await speech.feed(session, pcm8k + bytes(8000 * 2), realtime=False)
    deadline = time.monotonic() + 15
    while not finals and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    count = -1
    while time.monotonic() < deadline and count != len(finals):  # then until no more arrive
        count = len(finals)
        await asyncio.sleep(1.0)
    await session.close()
    return " ".join(finals)


async def test_real_phone_call_transcribes_replies_and_barge_in(models, tmp_path):
    stt, tts = models
    HEARD.clear()
    port = free_port()
    app = create_app({"receptionist": Receptionist}, transcriber=stt, tts=tts, db_path=str(tmp_path / "r.db"))
    mount_twilio(app, agent="receptionist", public_url=f"http://127.0.0.1:{port}", auth_token=TOKEN)
    request = "I would like to book a table for two people at seven tonight."
    # the caller's lines, synthesized before the call (Piper on the event loop would stall the simulated line)
    texts = (request, "Can you tell me a story?", "Sorry, wait a moment please.")
    lines = [speech.piper_speech(t, 8000) for t in texts]
    async with LiveServer(app, port=port) as srv:
        # 1. the caller speaks; Whisper hears it through μ-law 8 kHz
        sim = await place_call(srv, realtime=True)
        await sim.say(lines[0], then_silence_ms=200)
        await sim.wait(lambda: sim.first_media_at is not None, timeout=10, what="the reply")
        assert HEARD and speech.wer(request, HEARD[0]) <= 0.2, HEARD
        reply = "Your table for two is booked for seven o'clock tonight."
        await sim.wait(lambda: sim.played_bytes() > 8000 and not sim._fifo, timeout=10, what="the reply to play out")
        assert sim.errors == [] and sim.clears == []
        # 2. the reply, as the caller received it (μ-law), transcribes back
        heard_back = await transcribe(stt, g711.decode(bytes(sim.received)))
        print(f"caller said {HEARD[0]!r}; heard back {heard_back!r}")
        assert speech.wer(reply, heard_back) <= 0.25, heard_back

        # 3. barge-in: ask for a long story, talk over it after ~2 s
        start = len(sim.received)
        await sim.say(lines[1], then_silence_ms=200)
        await sim.wait(lambda: len(sim.received) > start, timeout=10, what="the story")
        story_started = time.monotonic()
        await asyncio.sleep(2.0)
        onset = await sim.say(lines[2])
        await sim.wait(lambda: sim.clears, timeout=3, what="clear")
        latency = sim.clears[0] - onset
        played_at_clear = sum(len(p.mulaw) for p in sim.played if p.at <= sim.clears[0])
        story_played = played_at_clear - start
        print(f"speaker starved {len(sim.starved)}x, longest {1000 * max(sim.starved, default=0):.0f} ms")
        print(f"barge-in: clear {1000 * latency:.0f} ms after speech onset; {story_played / 8000:.2f} s of story heard")
        assert latency <= 0.4
        assert time.monotonic() - story_started < 6  # the story (≈20 s) was cut short
        await asyncio.sleep(1.5)
        msgs = await history(srv, "receptionist", sim.call_sid)
        story = [m for m in msgs if m["role"] == "assistant" and m["interrupted"]]
        assert story, msgs
        heard = story[-1]["content"]
        assert STORY.startswith(heard.rstrip(".")) and len(heard.split()) < len(STORY.split())
        # the words stored match the audio the caller's speaker actually played (±3 words)
        expected = await expected_heard_words(tts, story_played)
        print(f"heard text: {heard!r} ({len(heard.split())} words; {expected} expected from the played audio)")
        assert abs(len(heard.split()) - expected) <= 3
        await sim.stop()


async def expected_heard_words(tts, played: int) -> int:
    """Words of STORY heard after ``played`` samples at 8 kHz, chunked and synthesized as the engine does."""
    chunker = SentenceChunker()
    chunks = chunker.push(STORY) + chunker.flush()
    words, left = 0, played
    for text in chunks:
        audio = b"".join([c.data async for c in tts.stream(text)])
        dur = len(audio) / 2 * 8000 / tts.sample_rate
        n = len(text.split())
        if left < dur:
            return words + int(n * left / dur)
        words, left = words + n, left - dur
    return words


async def test_mulaw_roundtrip_keeps_speech_intelligible(models):
    """μ-law alone costs Whisper little: the same speech scores the same WER (sanity check of the codec path)."""
    stt, _ = models
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    pcm = speech.piper_speech(text, 8000)
    mulaw_pcm = g711.decode(g711.encode(pcm))
    assert np.corrcoef(np.frombuffer(pcm, "<i2"), np.frombuffer(mulaw_pcm, "<i2"))[0, 1] > 0.99
    heard = await transcribe(stt, mulaw_pcm)
    assert speech.wer(text, heard) <= 0.2, heard
