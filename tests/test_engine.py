"""The call engine over a real WebSocket against the real app on loopback, with the fake providers."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from tests.harness import Client, LiveServer
from voice import TurnContext, VoiceAgent, VoiceInputAgent, create_app
from voice.testing import FakeTranscriber, FakeTTS, fake_speech_frame

# every test runs on SQLite and on PostgreSQL (VOICE_DATABASE_URL: a fresh database per test; tests/pg.py)
pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("store_kind")]

EVENTS: list[tuple[str, str]] = []


class Echo(VoiceAgent):
    async def on_turn(self, transcript: str, ctx: TurnContext):
        EVENTS.append(("turn", transcript))
        return f"You said: {transcript}."

    async def on_interrupt(self, call):
        EVENTS.append(("interrupt", call.id))


class Streamer(VoiceAgent):
    """Streams a long reply slowly; remembers whether it was cancelled."""

    async def on_turn(self, transcript: str, ctx: TurnContext):
        if transcript.startswith("slow"):
            yield "This is the first sentence of a long answer. "
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                EVENTS.append(("cancelled", transcript))
                raise
            yield "This part should never be heard."
            return
        for word in "One two three. Four five six. Seven eight nine.".split(" "):
            yield word + " "
            await asyncio.sleep(0.005)


class Talker(VoiceAgent):
    """Answers with a long text at once: seconds of audio that keep playing at the client."""

    async def on_turn(self, transcript: str, ctx: TurnContext):
        EVENTS.append(("history", [m["content"] for m in ctx.messages]))
        return (
            "Alpha bravo charlie delta echo foxtrot. Golf hotel india juliet kilo lima. "
            "Mike november oscar papa quebec romeo. Sierra tango uniform victor whiskey."
        )

    async def remind(self, payload):
        await self.speak_all(f"Reminder: {payload['what']}.")


class Greeter(Echo):
    async def on_call_start(self, call):
        await self.speak(call, "Hi! How can I help?")


class Picky(Echo):
    async def before_call_start(self, call):
        return call.query.get("allow") == "yes"


class Notes(VoiceInputAgent):
    async def on_transcript(self, text, call):
        EVENTS.append(("dictated", text))


AGENTS = {
    "echo": Echo,
    "streamer": Streamer,
    "talker": Talker,
    "MyGreeter": Greeter,
    "picky": Picky,
    "notes": Notes,
}


def make_app(tmp_path, **kw):
    stt = kw.pop("transcriber", FakeTranscriber())
    tts = kw.pop("tts", FakeTTS(sample_rate=24_000, seconds_per_char=0.02))
    return create_app(AGENTS, transcriber=stt, tts=tts, db_path=str(tmp_path / "voice.db"), **kw)


@pytest.fixture
async def server(tmp_path):
    EVENTS.clear()
    async with LiveServer(make_app(tmp_path)) as srv:
        yield srv


async def test_the_history_is_in_the_store_asked_for(server, store_kind):
    runtime = server.app.state.voice.runtime
    expected = {"sqlite": ("SQLiteStore", "LocalBus"), "postgres": ("PostgresStore", "PostgresBus")}[store_kind]
    assert (type(runtime.store).__name__, type(runtime.bus).__name__) == expected


async def history(srv, agent, instance):
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{srv.http}/agents/{agent}/{instance}/messages")
        r.raise_for_status()
        return r.json()["messages"]


async def say(client: Client, text: str) -> None:
    await client.send(fake_speech_frame("start"))
    await client.send(fake_speech_frame("interim", text.split()[0]))
    await client.send(fake_speech_frame("final", text))


async def test_full_voice_call(server):
    c = await Client.connect(f"{server.ws}/agents/echo/room1?_pk=abc")
    assert c.json("welcome")[0]["protocol_version"] == 1
    await c.wait_for("status", status="idle")
    await c.send({"type": "start_call"})
    config = await c.wait_for("audio_config")
    assert config == {"type": "audio_config", "format": "pcm16", "sampleRate": 16000}
    await c.wait_for("status", status="listening")
    mark = c.mark()
    await say(c, "good morning")
    await c.wait_for("transcript_interim", text="good", after=mark)
    user = await c.wait_for("transcript", role="user", after=mark)
    assert user["text"] == "good morning"
    interims = [m["text"] for m in c.json("transcript_interim")[-2:]]
    assert interims == ["good", ""]  # the interim shown is cleared by the final
    end = await c.wait_for("transcript_end", after=mark)
    assert end["text"] == "You said: good morning."
    metrics = await c.wait_for("metrics", after=mark)
    for key in ("llm_ms", "tts_ms", "first_audio_ms", "total_ms", "stt_ms", "voice_to_voice_ms"):
        assert metrics[key] is not None and metrics[key] >= 0, key
    await c.wait_for("status", status="listening", after=c.mark() - 1)
    # audio: pcm16 at 16 kHz, resampled from the 24 kHz fake TTS, about 0.02 s per character
    audio = np.frombuffer(c.audio(), dtype="<i2")
    expected = len("You said: good morning.") * 0.02 * 16000
    assert abs(len(audio) - expected) < 0.1 * expected
    statuses = [m["status"] for m in c.json("status")]
    assert statuses[-4:] == ["listening", "thinking", "speaking", "listening"]
    await asyncio.sleep(1.0)  # let the reply play out before it is stored
    msgs = await history(server, "echo", "room1")
    assert [(m["role"], m["content"], m["interrupted"]) for m in msgs] == [
        ("user", "good morning", False),
        ("assistant", "You said: good morning.", False),
    ]
    await c.close()


async def test_message_order_of_a_turn(server):
    c = await Client.connect(f"{server.ws}/agents/streamer/s1")
    await c.start_call()
    mark = c.mark()
    await c.send(fake_speech_frame("final", "count please"))
    await c.wait_for("metrics", after=mark)
    kinds = [m if isinstance(m, bytes) else m["type"] for _, m in c.messages[mark:]]
    kinds = ["audio" if isinstance(k, bytes) else k for k in kinds]
    assert kinds.index("transcript") < kinds.index("transcript_start") < kinds.index("transcript_delta")
    assert kinds.index("transcript_delta") < kinds.index("audio")
    assert kinds.count("transcript_delta") >= 9  # streamed word by word
    assert kinds.index("transcript_end") < kinds.index("metrics")
    assert "transcript_interim" not in kinds  # no interim was shown, so there is none to clear
    end = await c.wait_for("transcript_end", after=mark)
    assert end["text"].split() == "One two three. Four five six. Seven eight nine.".split()
    await c.close()


async def test_official_client_path_is_kebab_case_and_extra_query_ignored(server):
    c = await Client.connect(f"{server.ws}/agents/my-greeter/default?_pk=1f2e&model=nova-3")
    await c.send({"type": "start_call"})
    end = await c.wait_for("transcript_end")
    assert end["text"] == "Hi! How can I help?"
    await c.wait_audio(1000)
    await c.close()


async def test_text_message_outside_and_inside_a_call(server):
    c = await Client.connect(f"{server.ws}/agents/echo/text1")
    await c.send({"type": "text_message", "text": "typed hello"})
    end = await c.wait_for("transcript_end")
    assert end["text"] == "You said: typed hello."
    await c.wait_for("status", status="idle", after=c.mark() - 1)
    assert c.audio() == b""  # outside a call: text only
    await c.start_call()
    mark = c.mark()
    await c.send({"type": "text_message", "text": "typed again"})
    await c.wait_for("transcript_end", after=mark)
    await c.wait_audio(1000)  # inside a call the reply is spoken too
    await c.close()


async def test_barge_in_while_the_reply_is_still_being_sent(server):
    c = await Client.connect(f"{server.ws}/agents/streamer/b1")
    await c.start_call()
    await c.send(fake_speech_frame("final", "slow answer please"))
    await c.wait_audio(1000)
    await asyncio.sleep(1.2)  # the first sentence (0.9 s) has played; on_turn is still producing text
    mark = c.mark()
    await c.send(fake_speech_frame("start"))
    await c.wait_for("playback_interrupt", after=mark)
    await c.wait_for("status", status="listening", after=mark)
    await asyncio.sleep(0.2)
    assert ("cancelled", "slow answer please") in EVENTS
    msgs = await history(server, "streamer", "b1")
    assert msgs[-1]["role"] == "assistant" and msgs[-1]["interrupted"]
    assert msgs[-1]["content"] == "This is the first sentence of a long answer."
    await c.close()


async def test_a_finished_sentence_is_spoken_while_on_turn_is_still_thinking(server):
    """on_turn yields a sentence and then thinks for 5 s: the sentence is heard at once, not after the pause (a
    trailing full stop alone does not prove the sentence ended; the pause does)."""
    c = await Client.connect(f"{server.ws}/agents/streamer/stall")
    await c.start_call()
    mark = c.mark()
    await c.send(fake_speech_frame("final", "slow answer please"))
    await c.wait_for("transcript_delta", after=mark)
    started = asyncio.get_running_loop().time()
    await c.wait_audio(1000, timeout=1.5)
    assert asyncio.get_running_loop().time() - started < 1.0
    await c.close()


async def test_barge_in_during_client_playback_keeps_only_heard_text(server):
    c = await Client.connect(f"{server.ws}/agents/talker/p1")
    await c.start_call()
    await c.send(fake_speech_frame("final", "tell me everything"))
    await c.wait_for("transcript_end")
    await c.wait_for("status", status="listening", after=c.mark() - 1)
    # all ~6 s of audio has been sent at once; the client is still "playing" it (no acks: the server estimates)
    await asyncio.sleep(1.5)
    mark = c.mark()
    await c.send(fake_speech_frame("start"))
    await c.wait_for("playback_interrupt", after=mark)
    await asyncio.sleep(0.2)
    msgs = await history(server, "talker", "p1")
    reply = msgs[-1]
    assert reply["role"] == "assistant" and reply["interrupted"]
    assert reply["content"].startswith("Alpha bravo")
    assert "Sierra" not in reply["content"] and "Mike" not in reply["content"]
    await c.close()


async def test_playback_acks_decide_what_was_heard(server):
    c = await Client.connect(f"{server.ws}/agents/talker/ack1")
    await c.start_call()
    await c.send(fake_speech_frame("final", "tell me everything"))
    await c.wait_for("transcript_end")
    await c.wait_audio(16000 * 2 * 2)
    # the client says it played exactly the first sentence (40 chars at 0.02 s/char = 0.8 s)...
    first = "Alpha bravo charlie delta echo foxtrot."
    await c.send({"type": "playback_ack", "played_samples": int(len(first) * 0.02 * 16000) + 50})
    await asyncio.sleep(0.1)
    await c.send(fake_speech_frame("start"))  # ...although by the clock it would have played more
    await c.wait_for("playback_interrupt")
    await asyncio.sleep(0.5)
    msgs = await history(server, "talker", "ack1")
    assert msgs[-1]["content"] == first and msgs[-1]["interrupted"]
    await c.close()


async def test_client_interrupt_message_stops_the_turn(server):
    c = await Client.connect(f"{server.ws}/agents/streamer/i1")
    await c.start_call()
    await c.send(fake_speech_frame("final", "slow one"))
    await c.wait_audio(1000)
    mark = c.mark()
    await c.send({"type": "interrupt"})
    await c.wait_for("status", status="listening", after=mark)
    await asyncio.sleep(0.1)
    assert ("cancelled", "slow one") in EVENTS
    await c.close()


async def test_a_new_utterance_supersedes_the_turn_in_flight(server):
    c = await Client.connect(f"{server.ws}/agents/streamer/sup")
    await c.start_call()
    await c.send(fake_speech_frame("final", "slow first"))
    await c.wait_for("transcript_start")
    mark = c.mark()
    await c.send(fake_speech_frame("final", "second"))
    end = await c.wait_for("transcript_end", after=mark)
    assert end["text"].startswith("One two three.")
    assert ("cancelled", "slow first") in EVENTS
    await c.close()


async def test_history_survives_reconnect_and_restart(tmp_path):
    EVENTS.clear()
    async with LiveServer(make_app(tmp_path)) as srv:
        c = await Client.connect(f"{srv.ws}/agents/talker/h1")
        await c.send({"type": "text_message", "text": "first"})
        await c.wait_for("transcript_end")
        await c.wait_for("status", status="idle", after=c.mark() - 1)
        await c.close()
        c = await Client.connect(f"{srv.ws}/agents/talker/h1")
        await c.send({"type": "text_message", "text": "second"})
        await c.wait_for("transcript_end")
        await c.close()
    assert EVENTS[-1][0] == "history" and EVENTS[-1][1][0] == "first"
    async with LiveServer(make_app(tmp_path)) as srv:  # a new process-worth of state, same database
        msgs = await history(srv, "talker", "h1")
        assert [m["content"] for m in msgs if m["role"] == "user"] == ["first", "second"]
        assert len(msgs) == 4
        c = await Client.connect(f"{srv.ws}/agents/talker/h1")
        await c.send({"type": "text_message", "text": "third"})
        await c.wait_for("transcript_end")
        await c.close()
        assert EVENTS[-1][1][:3] == ["first", EVENTS[-1][1][1], "second"]


async def test_instances_are_isolated(server):
    a = await Client.connect(f"{server.ws}/agents/echo/alice")
    b = await Client.connect(f"{server.ws}/agents/echo/bob")
    await a.send({"type": "text_message", "text": "secret of alice"})
    await a.wait_for("transcript_end")
    await asyncio.sleep(0.2)
    assert b.json("transcript") == []
    assert await history(server, "echo", "bob") == []
    assert [m["content"] for m in await history(server, "echo", "alice")][0] == "secret of alice"
    await a.close()
    await b.close()


async def test_speak_all_reaches_every_call_of_the_instance(server):
    a = await Client.connect(f"{server.ws}/agents/talker/shared")
    b = await Client.connect(f"{server.ws}/agents/talker/shared")
    other = await Client.connect(f"{server.ws}/agents/talker/elsewhere")
    for c in (a, b, other):
        await c.start_call()
    app_agent = server.app.state.voice.runtime._instances[("talker", "shared")][0]
    await app_agent.speak_all("Attention please.")
    for c in (a, b):
        end = await c.wait_for("transcript_end")
        assert end["text"] == "Attention please."
        await c.wait_audio(1000)
    assert other.json("transcript_end") == [] and other.audio() == b""
    await asyncio.sleep(1.0)
    msgs = await history(server, "talker", "shared")
    assert [m["content"] for m in msgs] == ["Attention please."]  # stored once, not once per connection
    for c in (a, b, other):
        await c.close()


async def test_dictation_agent_gets_transcripts_and_speaks_nothing(server):
    c = await Client.connect(f"{server.ws}/agents/notes/d1")
    await c.start_call()
    await c.send(fake_speech_frame("interim", "buy"))
    await c.wait_for("transcript_interim", text="buy")
    await c.send(fake_speech_frame("final", "buy more milk"))
    user = await c.wait_for("transcript", role="user")
    assert user["text"] == "buy more milk"
    await asyncio.sleep(0.3)
    assert ("dictated", "buy more milk") in EVENTS
    assert c.audio() == b"" and c.json("transcript_start") == []
    assert [m["content"] for m in await history(server, "notes", "d1")] == ["buy more milk"]
    await c.close()


async def test_before_call_start_can_reject(server):
    c = await Client.connect(f"{server.ws}/agents/picky/x")
    await c.send({"type": "start_call"})
    err = await c.wait_for("error")
    assert err["code"] == "call_rejected"
    await c.send(fake_speech_frame("final", "ignored"))
    await asyncio.sleep(0.2)
    assert c.json("transcript") == []
    await c.close()
    c = await Client.connect(f"{server.ws}/agents/picky/x?allow=yes")
    await c.start_call()
    await c.close()


async def test_schedule_fires_after_restart(tmp_path):
    EVENTS.clear()
    async with LiveServer(make_app(tmp_path)) as srv:
        c = await Client.connect(f"{srv.ws}/agents/talker/rem")
        agent = srv.app.state.voice.runtime._instances[("talker", "rem")][0]
        keep = await agent.schedule(1.0, "remind", {"what": "stretch"})
        dropped = await agent.schedule(1.0, "remind", {"what": "never"})
        assert await agent.cancel_schedule(dropped)
        await c.close()
    assert keep
    await asyncio.sleep(1.2)  # it came due while the server was down
    async with LiveServer(make_app(tmp_path)) as srv:
        for _ in range(50):
            msgs = await history(srv, "talker", "rem")
            if msgs:
                break
            await asyncio.sleep(0.05)
        assert [m["content"] for m in msgs] == ["Reminder: stretch."]


async def test_speech_start_from_our_own_vad_when_stt_has_none(tmp_path):
    EVENTS.clear()
    app = make_app(tmp_path, transcriber=FakeTranscriber(emits_speech_start=False))
    async with LiveServer(app) as srv:
        c = await Client.connect(f"{srv.ws}/agents/talker/vad")
        await c.start_call()
        await c.send(fake_speech_frame("final", "talk"))
        await c.wait_audio(16000)
        # loud broadband noise in 20 ms frames, like a person starting to talk over the agent
        rng = np.random.default_rng(1)
        mark = c.mark()
        for _ in range(25):
            t = np.arange(320) / 16000
            voice = 6000 * np.sin(2 * np.pi * 220 * t) + rng.normal(0, 2000, 320)
            await c.send(voice.astype("<i2").tobytes())
            await asyncio.sleep(0.02)
        await c.wait_for("playback_interrupt", after=mark, timeout=2)
        await c.close()


class Broken(VoiceAgent):
    async def on_turn(self, transcript: str, ctx: TurnContext):
        if transcript == "explode":
            yield "Let me see. "
            raise RuntimeError("the LLM fell over")
        yield f"Fine: {transcript}."


async def test_on_turn_raising_reports_an_error_and_the_call_keeps_listening(tmp_path):
    app = create_app({"broken": Broken}, transcriber=FakeTranscriber(), tts=FakeTTS(), db_path=str(tmp_path / "b.db"))
    async with LiveServer(app) as srv:
        c = await Client.connect(f"{srv.ws}/agents/broken/x")
        await c.start_call()
        await c.send(fake_speech_frame("final", "explode"))
        err = await c.wait_for("error", code="turn_failed")
        assert "RuntimeError" in err["message"] and "fell over" not in err["message"]  # no internals leak
        await c.wait_for("status", status="listening", after=c.mark() - 1)
        mark = c.mark()
        await c.send(fake_speech_frame("final", "again"))
        assert (await c.wait_for("transcript_end", after=mark))["text"] == "Fine: again."
        await asyncio.sleep(0.5)
        msgs = await history(srv, "broken", "x")
        assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
        assert msgs[1]["content"] == "Let me see." and msgs[1]["interrupted"]
        await c.close()


class CountingTTS(FakeTTS):
    def __init__(self):
        super().__init__(delay=0.05)
        self.active = self.peak = 0

    async def synthesize(self, text, cancel=None, **kw):
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            return await super().synthesize(text, cancel, **kw)
        finally:
            self.active -= 1


class Chatty(VoiceAgent):
    async def on_turn(self, transcript, ctx):
        return " ".join(f"This is sentence number {i} of many." for i in range(12))


async def test_tts_runs_ahead_with_bounded_concurrency_and_audio_stays_in_order(tmp_path):
    tts = CountingTTS()
    app = create_app({"chatty": Chatty}, transcriber=FakeTranscriber(), tts=tts, db_path=str(tmp_path / "c.db"))
    async with LiveServer(app) as srv:
        c = await Client.connect(f"{srv.ws}/agents/chatty/x")
        await c.start_call()
        await c.send(fake_speech_frame("final", "go"))
        await c.wait_for("metrics", timeout=10)
        assert tts.peak == 2  # look-ahead of 2: never one-at-a-time, never unbounded
        assert tts.spoken == [f"This is sentence number {i} of many." for i in range(12)]
        await c.close()


async def test_voice_server_mounts_into_an_existing_fastapi_app(tmp_path):
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    from voice import VoiceServer

    voice_server = VoiceServer({"echo": Echo}, transcriber=FakeTranscriber(), tts=FakeTTS(),
                               db_path=str(tmp_path / "m.db"))

    @asynccontextmanager
    async def lifespan(app):
        async with voice_server.lifespan(app):
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/mine")
    async def mine():
        return {"mine": True}

    app.include_router(voice_server.router, prefix="/voice")
    async with LiveServer(app) as srv:
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{srv.http}/mine")).json() == {"mine": True}
        c = await Client.connect(f"{srv.ws}/voice/agents/echo/x")
        await c.send({"type": "text_message", "text": "mounted"})
        assert (await c.wait_for("transcript_end"))["text"] == "You said: mounted."
        await c.close()


class Thinker(VoiceAgent):
    """A slow LLM: the speculative start is what makes it fast."""

    async def on_turn(self, transcript, ctx):
        EVENTS.append(("thinking", transcript))
        try:
            await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            EVENTS.append(("void", transcript))
            raise
        return f"Answer to {transcript}."


async def test_eager_end_of_turn_starts_early_speaks_only_on_commit(tmp_path):
    EVENTS.clear()
    app = create_app({"thinker": Thinker}, transcriber=FakeTranscriber(), tts=FakeTTS(), db_path=str(tmp_path / "e.db"))
    async with LiveServer(app) as srv:
        c = await Client.connect(f"{srv.ws}/agents/thinker/x")
        await c.start_call()
        # eager, then the user resumes: the speculative turn is void and nothing was sent
        await c.send(fake_speech_frame("eager", "what is"))
        await asyncio.sleep(0.1)
        await c.send(fake_speech_frame("resumed"))
        await asyncio.sleep(0.1)
        assert ("void", "what is") in EVENTS
        assert c.json("transcript_start") == [] and c.json("transcript") == [] and c.audio() == b""
        # eager with the final words, 0.4 s before the final: the reply comes ~0.4 s sooner than the LLM allows
        await c.send(fake_speech_frame("eager", "what is the time"))
        await asyncio.sleep(0.4)
        assert c.json("transcript_start") == []  # nothing spoken before the commit
        sent = asyncio.get_running_loop().time()
        await c.send(fake_speech_frame("final", "What is the time?"))
        end = await c.wait_for("transcript_end")
        waited = asyncio.get_running_loop().time() - sent
        assert end["text"] == "Answer to what is the time."
        assert waited < 0.35, waited
        assert EVENTS.count(("thinking", "what is the time")) == 1
        # eager text that differs from the final: the turn is redone with the final words
        mark = c.mark()
        await c.send(fake_speech_frame("eager", "book a table"))
        await asyncio.sleep(0.05)
        await c.send(fake_speech_frame("final", "book a table for two"))
        end = await c.wait_for("transcript_end", after=mark)
        assert end["text"] == "Answer to book a table for two."
        assert ("void", "book a table") in EVENTS
        await asyncio.sleep(1.0)
        msgs = await history(srv, "thinker", "x")
        assert [m["content"] for m in msgs if m["role"] == "user"] == ["What is the time?", "book a table for two"]
        await c.close()


class Goodbye(VoiceAgent):
    async def on_turn(self, transcript, ctx):
        if transcript == "more":
            await self.speak(ctx.call, "One more thing.")  # queued after this reply, not a deadlock
            yield "Sure."
            return
        if transcript == "bye":
            yield "Goodbye!"
            await ctx.call.hangup()  # after the goodbye has played
            return
        yield "Hello."


async def test_hangup_and_speak_from_inside_on_turn(tmp_path):
    app = create_app({"bye": Goodbye}, transcriber=FakeTranscriber(), tts=FakeTTS(), db_path=str(tmp_path / "g.db"))
    async with LiveServer(app) as srv:
        c = await Client.connect(f"{srv.ws}/agents/bye/x")
        await c.start_call()
        await c.send(fake_speech_frame("final", "more"))
        await c.wait_for("transcript_end", text="One more thing.")
        assert [m["text"] for m in c.json("transcript_end")] == ["Sure.", "One more thing."]
        await asyncio.sleep(0.3)
        mark = c.mark()
        await c.send(fake_speech_frame("final", "bye"))
        for _ in range(60):
            if c.closed:
                break
            await asyncio.sleep(0.05)
        assert c.closed is not None and c.closed.rcvd.code == 1000
        assert [m["text"] for _, m in c.messages[mark:] if isinstance(m, dict) and m["type"] == "transcript_end"] == [
            "Goodbye!"
        ]
        msgs = await history(srv, "bye", "x")
        assert [m["content"] for m in msgs] == ["more", "Sure.", "One more thing.", "bye", "Goodbye!"]


class Recorder(VoiceAgent):
    async def on_turn(self, transcript, ctx):
        EVENTS.append(("seen", len(ctx.messages)))
        return "ok."


async def test_history_limit_setting_bounds_ctx_messages(tmp_path):
    EVENTS.clear()
    app = create_app({"rec": Recorder}, transcriber=FakeTranscriber(), tts=FakeTTS(), db_path=str(tmp_path / "h.db"),
                     history_limit=3)
    async with LiveServer(app) as srv:
        c = await Client.connect(f"{srv.ws}/agents/rec/x")
        for i in range(4):
            mark = c.mark()
            await c.send({"type": "text_message", "text": f"message {i}"})
            await c.wait_for("transcript_end", after=mark)
            await c.wait_for("status", status="idle", after=mark)
        assert [n for kind, n in EVENTS if kind == "seen"] == [0, 2, 3, 3]
        await c.close()


async def test_an_ended_reply_is_freed_at_once(server):
    """A long call must not hold every past reply: asyncio keeps a copy of the context of each timer it set (the
    TTS chunk timeout among them) until the timer would have fired, and the reply's context must not pin it."""
    import gc

    from voice.reply import Reply

    c = await Client.connect(f"{server.ws}/agents/streamer/freed?_pk=freed")
    await c.start_call()
    for n in range(5):
        mark = c.mark()
        await c.send(fake_speech_frame("final", f"count {n}"))
        await c.wait_for("transcript_end", after=mark)
        await c.wait_for("status", status="listening", after=mark)
    await asyncio.sleep(0.2)
    gc.collect()
    live = [o for o in gc.get_objects() if isinstance(o, Reply) and o.host.id == "freed"]
    assert len(live) <= 1, f"{len(live)} replies are still in memory, not just the last one"
    await c.close()
