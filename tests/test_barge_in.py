"""Pause, then decide, over a real WebSocket against the real app (fake STT driven by marker frames, fake TTS):
an acknowledgement or a noise plays the reply on from where it paused and the reply is stored whole; words cut
it; what the agent's author decides (uninterruptible speech, ``allow_interruptions``, ``on_user_idle``) holds."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness import Client, LiveServer
from tests.test_engine import history
from voice import TurnContext, VoiceAgent, create_app
from voice.testing import FakeTranscriber, FakeTTS, fake_speech_frame

pytestmark = pytest.mark.asyncio

LONG = "Alpha bravo charlie delta echo foxtrot. Golf hotel india juliet kilo lima. Mike november oscar papa quebec."
IDLE: list[float] = []


class Talker(VoiceAgent):
    async def on_turn(self, transcript: str, ctx: TurnContext):
        return LONG if transcript.startswith("talk") else f"You said: {transcript}."

    async def on_user_idle(self, call, idle_seconds):
        IDLE.append(idle_seconds)
        await self.speak(call, "Are you still there?")


class Firm(Talker):
    allow_interruptions = False


class Consent(Talker):
    async def on_call_start(self, call):
        await self.speak(call, "This call is recorded for quality purposes, please stay on the line.",
                         interruptible=False)


@pytest.fixture
async def server(tmp_path):
    IDLE.clear()
    app = create_app({"talker": Talker, "firm": Firm, "consent": Consent}, transcriber=FakeTranscriber(),
                     tts=FakeTTS(seconds_per_char=0.03), db_path=str(tmp_path / "v.db"), resume_after=0.3,
                     user_idle_seconds=1.5)
    async with LiveServer(app) as srv:
        yield srv


async def talking(server, agent: str, instance: str) -> Client:
    """A call whose agent is in the middle of a long reply (~3 s of audio)."""
    c = await Client.connect(f"{server.ws}/agents/{agent}/{instance}")
    await c.start_call()
    await c.send(fake_speech_frame("final", "talk to me"))
    await c.wait_audio(16000 * 2 * 1)
    await asyncio.sleep(1.0)  # a second of it has been heard
    return c


async def stored_reply(server, agent: str, instance: str) -> dict:
    for _ in range(100):
        replies = [m for m in await history(server, agent, instance) if m["role"] == "assistant"]
        if replies:
            return replies[0]
        await asyncio.sleep(0.1)
    raise AssertionError("the reply was never stored")


async def test_an_acknowledgement_pauses_then_plays_on_and_the_reply_is_stored_whole(server):
    c = await talking(server, "talker", "ack")
    mark = c.mark()
    await c.send(fake_speech_frame("start"))
    await c.wait_for("playback_pause", after=mark, timeout=1)
    await c.send(fake_speech_frame("interim", "mm"))
    await c.send(fake_speech_frame("stopped"))
    await c.send(fake_speech_frame("final", "Mm-hmm."))
    await c.wait_for("playback_resume", after=mark, timeout=2)
    reply = await stored_reply(server, "talker", "ack")
    assert reply["content"] == LONG and not reply["interrupted"]
    assert c.json("playback_interrupt") == []
    assert [m["text"] for m in c.json("transcript") if m["role"] == "user"] == ["talk to me"]  # "mhm" not a turn
    assert len(c.json("transcript_end")) == 1  # and not answered
    await c.close()


async def test_a_noise_without_words_pauses_then_plays_on(server):
    c = await talking(server, "talker", "noise")
    mark = c.mark()
    await c.send(fake_speech_frame("start"))
    await c.send(fake_speech_frame("stopped"))
    await c.wait_for("playback_pause", after=mark, timeout=1)
    await c.wait_for("playback_resume", after=mark, timeout=2)  # resume_after: 0.3 s of silence
    reply = await stored_reply(server, "talker", "noise")
    assert reply["content"] == LONG and not reply["interrupted"]
    assert c.json("playback_interrupt") == []
    await c.close()


async def test_words_cut_the_reply_store_what_was_heard_and_are_answered(server):
    c = await talking(server, "talker", "stop")
    mark = c.mark()
    await c.send(fake_speech_frame("start"))
    await c.send(fake_speech_frame("interim", "wait"))
    await c.wait_for("playback_interrupt", after=mark, timeout=1)
    await c.send(fake_speech_frame("final", "wait what about tuesday"))
    assert (await c.wait_for("transcript_end", after=mark))["text"] == "You said: wait what about tuesday."
    reply = await stored_reply(server, "talker", "stop")
    assert reply["interrupted"] and 0 < len(reply["content"]) < len(LONG)
    await c.close()


async def test_speech_that_goes_on_takes_the_floor_before_a_word_is_known(server):
    c = await talking(server, "talker", "long")
    mark = c.mark()
    await c.send(fake_speech_frame("start"))
    paused = await c.wait_for("playback_pause", after=mark, timeout=1)
    assert paused
    await c.wait_for("playback_interrupt", after=mark, timeout=2)  # interrupt_after: 0.7 s of speech
    await c.close()


async def test_an_agent_that_allows_no_interruptions_is_not_paused_and_answers_after(server):
    c = await talking(server, "firm", "firm")
    mark = c.mark()
    await c.send(fake_speech_frame("start"))
    await c.send(fake_speech_frame("final", "stop right now"))
    end = await c.wait_for("transcript_end", after=mark, timeout=10)  # answered once the reply has been heard
    assert end["text"] == "You said: stop right now."
    assert c.json("playback_pause") == [] and c.json("playback_interrupt") == []
    assert (await stored_reply(server, "firm", "firm"))["content"] == LONG
    await c.close()


async def test_an_uninterruptible_greeting_is_heard_whole(server):
    c = await Client.connect(f"{server.ws}/agents/consent/c1")
    await c.start_call()
    await c.wait_audio(16000)
    await c.send(fake_speech_frame("start"))
    await c.send(fake_speech_frame("interim", "hello"))
    await asyncio.sleep(0.5)
    assert c.json("playback_pause") == [] and c.json("playback_interrupt") == []
    assert not (await stored_reply(server, "consent", "c1"))["interrupted"]
    await c.close()


async def test_a_silent_user_is_asked_if_they_are_still_there(server):
    c = await Client.connect(f"{server.ws}/agents/talker/idle")
    await c.start_call()
    end = await c.wait_for("transcript_end", timeout=4)
    assert end["text"] == "Are you still there?" and IDLE and IDLE[0] == pytest.approx(1.5)
    mark = c.mark()
    await c.send(fake_speech_frame("final", "yes I am"))  # talking restarts the clock
    assert (await c.wait_for("transcript_end", after=mark))["text"] == "You said: yes I am."
    await c.close()
