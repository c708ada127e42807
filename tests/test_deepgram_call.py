"""Whole calls through the engine with Deepgram providers, against the local protocol-faithful fake Deepgram."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.fake_deepgram import FakeDeepgram, silence, speech
from tests.harness import Client, LiveServer
from voice import TurnContext, VoiceAgent, create_app
from voice.providers.deepgram import AuraTTS, FluxTranscriber, NovaTranscriber

pytestmark = pytest.mark.asyncio
KEY = "test-key"


class Answer(VoiceAgent):
    """Picks Nova-3 for connections that ask for it (``?model=nova-3``), Flux otherwise."""

    flux: FluxTranscriber
    nova: NovaTranscriber

    def create_transcriber(self, call):
        return self.nova if call.query.get("model") == "nova-3" else self.flux

    async def on_turn(self, transcript: str, ctx: TurnContext):
        await asyncio.sleep(0.05)
        return f"Sure, {transcript}."


async def stream(c: Client, pcm: bytes) -> None:
    for i in range(0, len(pcm), 640):
        await c.send(pcm[i : i + 640])
        await asyncio.sleep(0.005)  # faster than real time: the fake follows audio time, not the clock


def make(fake: FakeDeepgram, tmp_path, **flux_options):
    Answer.flux = FluxTranscriber(api_key=KEY, base_url=fake.url, **flux_options)
    Answer.nova = NovaTranscriber(api_key=KEY, base_url=fake.url)
    tts = AuraTTS(api_key=KEY, base_url=fake.url, sample_rate=16000)
    return create_app({"answer": Answer}, tts=tts, db_path=str(tmp_path / "dg.db"), warm_up=False)


async def test_full_call_with_flux_and_aura(tmp_path):
    async with FakeDeepgram() as fake, LiveServer(make(fake, tmp_path)) as srv:
        c = await Client.connect(f"{srv.ws}/agents/answer/flux")
        await c.start_call()
        await stream(c, speech("book a table for two") + silence(1500))
        user = await c.wait_for("transcript", role="user", timeout=10)
        assert user["text"] == "book a table for two"
        end = await c.wait_for("transcript_end", timeout=10)
        assert end["text"] == "Sure, book a table for two."
        await c.wait_for("metrics", timeout=10)
        assert len(c.audio()) > 1000
        speak = fake.conns_on("/v1/speak")[0]
        assert speak.param("encoding") == "linear16" and speak.param("sample_rate") == "16000"
        assert {"type": "Speak", "text": "Sure, book a table for two."} in speak.client_messages
        assert fake.conns_on("/v2/listen")[0].headers["Authorization"] == f"Token {KEY}"
        await c.close()


async def test_eager_end_of_turn_through_the_engine_answers_once(tmp_path):
    async with FakeDeepgram() as fake, LiveServer(make(fake, tmp_path, eager_eot_threshold=0.5)) as srv:
        c = await Client.connect(f"{srv.ws}/agents/answer/eager")
        await c.start_call()
        # a pause inside the turn: eager, resumed, eager again, then the end of turn commits
        await stream(c, speech("i want to") + silence(300) + speech("book a table") + silence(1500))
        end = await c.wait_for("transcript_end", timeout=10)
        assert end["text"] == "Sure, i want to book a table."
        await asyncio.sleep(0.3)
        assert [m["text"] for m in c.json("transcript") if m["role"] == "user"] == ["i want to book a table"]
        assert len(c.json("transcript_start")) == 1  # the voided speculative turn sent nothing
        await c.close()


async def test_runtime_switch_to_nova_3_from_the_query(tmp_path):
    async with FakeDeepgram() as fake, LiveServer(make(fake, tmp_path)) as srv:
        c = await Client.connect(f"{srv.ws}/agents/answer/nova?model=nova-3")
        await c.start_call()
        await stream(c, speech("what is the weather") + silence(2000))
        user = await c.wait_for("transcript", role="user", timeout=10)
        assert user["text"].lower().startswith("what is the weather")
        assert fake.conns_on("/v1/listen") and not fake.conns_on("/v2/listen")
        await c.close()


async def test_bad_key_tells_the_client_and_ends_the_call_without_leaking_it(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    async with FakeDeepgram(api_keys=("another-key",)) as fake, LiveServer(make(fake, tmp_path)) as srv:
        c = await Client.connect(f"{srv.ws}/agents/answer/badkey")
        await c.send({"type": "start_call"})
        await stream(c, speech("hello") + silence(300))
        err = await c.wait_for("error", timeout=10)
        assert KEY not in err["message"]
        await c.wait_for("status", status="idle", timeout=10)
        await c.close()
    assert caplog.records and KEY not in caplog.text  # not in any log line, at any level
    assert all(KEY not in str(m) for _, m in c.messages)  # nor in anything sent to the client
