"""End to end on the real offline models: Piper speech streamed in real time over a real WebSocket to the real server
with Whisper and Piper, and back."""

from __future__ import annotations

import asyncio
import time

import pytest
import pytest_asyncio

from tests.harness import Client, LiveServer
from tests.speech import Recorder, feed, piper_speech, silence, wer
from voice import TurnContext, create_app
from voice.demo import DEMO_AGENTS, EchoAssistant
from voice.local import PiperTTS, WhisperTranscriber
from voice.providers.base import TranscriberOptions

pytestmark = pytest.mark.asyncio(loop_scope="module")

STORY = (
    "Once upon a time there was a lighthouse keeper who lived alone on a rocky island. "
    "Every night he climbed the stairs to light the lamp for the ships at sea. "
    "One stormy evening a small boat appeared in the waves, and he ran down to help. "
    "The sailors thanked him and stayed until morning, telling stories by the fire."
)


class Storyteller(EchoAssistant):
    async def on_call_start(self, call):
        pass

    async def on_turn(self, transcript: str, ctx: TurnContext):
        return STORY if "story" in transcript.lower() else f"You said: {transcript}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory):
    stt, tts = WhisperTranscriber(), PiperTTS(deterministic=True)
    agents = dict(DEMO_AGENTS, story=Storyteller)
    app = create_app(agents, transcriber=stt, tts=tts, db_path=str(tmp_path_factory.mktemp("e2e") / "v.db"))
    async with LiveServer(app) as srv:
        srv.stt = stt
        yield srv


async def stream(c: Client, pcm: bytes) -> float:
    """Send PCM in 20 ms frames in real time; returns when the first frame was sent."""
    start = time.monotonic()
    frame = 640
    for k, i in enumerate(range(0, len(pcm), frame)):
        await asyncio.sleep(max(0.0, start + k * 0.02 - time.monotonic()))
        await c.send(pcm[i : i + frame])
    return start


async def keep_streaming_silence(c: Client, seconds: float) -> None:
    await stream(c, silence(int(seconds * 1000)))


async def transcribe(stt: WhisperTranscriber, pcm: bytes) -> str:
    rec = Recorder()
    session = await stt.create_session(TranscriberOptions(on_event=rec))
    await feed(session, pcm + silence(1500))
    await rec.wait_for(lambda r: len(r.finals) >= 1, timeout=20)
    await session.close()
    return " ".join(f.text for f in rec.finals)


async def history(srv, agent, instance):
    import httpx

    async with httpx.AsyncClient() as http:
        return (await http.get(f"{srv.http}/agents/{agent}/{instance}/messages")).json()["messages"]


async def test_spoken_question_is_transcribed_answered_spoken_and_stored(server):
    question = "can you tell me how far it is to the train station"
    c = await Client.connect(f"{server.ws}/agents/story/e2e1")
    await c.start_call()
    sender = asyncio.create_task(stream(c, silence(300) + piper_speech(question) + silence(4000)))
    user = await c.wait_for("transcript", role="user", timeout=20)
    assert wer(question, user["text"]) <= 0.15, user["text"]
    end = await c.wait_for("transcript_end", timeout=10)
    metrics = await c.wait_for("metrics", timeout=10)
    await sender
    reply_audio = c.audio()
    assert len(reply_audio) > 16000 * 2  # more than a second of speech
    back = await transcribe(server.stt, reply_audio)
    assert wer(end["text"], back) <= 0.25, (end["text"], back)
    assert metrics["voice_to_voice_ms"] is not None and metrics["stt_ms"] is not None
    await c.close()
    await asyncio.sleep(0.3)
    msgs = await history(server, "story", "e2e1")
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert msgs[1]["content"] == end["text"] and not msgs[1]["interrupted"]


async def test_a_short_pause_inside_a_sentence_stays_one_turn_and_separate_utterances_are_two(server):
    c = await Client.connect(f"{server.ws}/agents/dictation/e2e-turns")
    await c.start_call()
    one = piper_speech("i would like to order") + silence(350) + piper_speech("a large pizza with mushrooms")
    two = piper_speech("and a bottle of water")
    await stream(c, silence(300) + one + silence(3000) + two + silence(2000))
    await asyncio.sleep(1.0)
    turns = [m["text"] for m in c.json("transcript") if m["role"] == "user"]
    assert len(turns) == 2, turns
    assert wer("i would like to order a large pizza with mushrooms", turns[0]) <= 0.15, turns
    assert wer("and a bottle of water", turns[1]) <= 0.15, turns
    await c.close()


async def test_barge_in_with_real_speech_interrupts_fast_and_keeps_the_heard_part(server):
    c = await Client.connect(f"{server.ws}/agents/story/e2e-barge")
    await c.start_call()
    await stream(c, silence(300) + piper_speech("please tell me a story") + silence(600))
    await c.wait_audio(16000 * 2, timeout=15)  # the story has started playing
    await keep_streaming_silence(c, 2.0)
    mark = c.mark()
    onset = await stream(c, piper_speech("wait stop"))  # speech onset = first frame sent
    interrupt = await c.wait_for("playback_interrupt", after=mark, timeout=5)
    t_interrupt = next(t for t, m in c.messages[mark:] if m is interrupt)
    # the client stops playing at the first of playback_pause (maybe an acknowledgement) and playback_interrupt
    t_quiet = next(t for t, m in c.messages[mark:] if m.get("type") in ("playback_pause", "playback_interrupt"))
    assert t_quiet - onset <= 0.4, t_quiet - onset
    assert t_interrupt - onset <= 1.0, t_interrupt - onset  # "wait stop" is an interruption, not an "mhm"
    await keep_streaming_silence(c, 1.5)
    msgs = await history(server, "story", "e2e-barge")
    story = [m for m in msgs if m["role"] == "assistant"][0]
    assert story["interrupted"]
    assert STORY.startswith(story["content"][:40])
    assert 20 < len(story["content"]) < len(STORY) * 0.6, story["content"]
    await c.close()


async def test_two_calls_at_once_get_their_own_transcripts(server):
    texts = ["the quick brown fox jumps over the lazy dog", "please remind me to water the plants tomorrow"]
    clients = [await Client.connect(f"{server.ws}/agents/dictation/e2e-pair-{i}") for i in range(2)]
    for c in clients:
        await c.start_call()
    await asyncio.gather(*(stream(c, silence(300) + piper_speech(t) + silence(2500)) for c, t in zip(clients, texts)))
    for c, t in zip(clients, texts):
        got = (await c.wait_for("transcript", role="user", timeout=10))["text"]
        assert wer(t, got) <= 0.15, (t, got)
        await c.close()
