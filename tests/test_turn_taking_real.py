"""Conversation-grade turn-taking with the real models (Whisper tiny.en + Piper), real time, over the WebSocket: a
hesitation after an unfinished phrase stays one turn, a pause inside a clause too, two turns 4 s apart are two; an
acknowledgement or a noise over the agent's reply does not cut it, a real interruption does, quickly. The cases come
from the speech set (tests/speech_set.py), several voices; bench/turns.py runs all of them."""

from __future__ import annotations

import httpx
import pytest
import pytest_asyncio

from tests.harness import LiveServer
from tests.speech_call import run_injected_case, run_stream_case
from tests.speech_set import cases
from voice import TurnContext, VoiceAgent, create_app
from voice.local import PiperTTS, WhisperTranscriber

pytestmark = pytest.mark.asyncio(loop_scope="module")

LONG = (" Here is a longer answer, so that there is time to talk over me: the weather will stay mild all week, with"
        " a little rain on Thursday and sunshine again by the weekend.")


class Echo(VoiceAgent):
    async def on_turn(self, transcript: str, ctx: TurnContext):
        return f"You said: {transcript}" + (LONG if ctx.call.query.get("long") else "")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory):
    app = create_app({"echo": Echo}, transcriber=WhisperTranscriber(), tts=PiperTTS(deterministic=True), webrtc=False,
                     db_path=str(tmp_path_factory.mktemp("turns") / "v.db"))
    async with LiveServer(app) as srv:
        yield srv


def pick(kind: str, n: int) -> list:
    """The first ``n`` cases of a kind, across the dev voices."""
    return cases("dev", [kind])[:n]


@pytest.mark.parametrize("case", pick("hesitation", 3) + pick("midpause", 2) + pick("two_turns", 1),
                         ids=lambda c: c.id)
async def test_pauses_inside_a_turn_keep_it_one_turn_and_a_long_gap_makes_two(server, case):
    result = await run_stream_case(server.ws, case)
    assert result["turns"] == len(case.expected_turns), result["heard"]
    assert result["wer"] <= 0.35, result["heard"]


@pytest.mark.parametrize("case", pick("complete", 3), ids=lambda c: c.id)
async def test_a_complete_question_is_answered_promptly(server, case):
    result = await run_stream_case(server.ws, case)
    assert result["turns"] == 1 and result["wer"] <= 0.35, result["heard"]
    assert result["v2v_ms"] < 1000  # the benchmark measures the percentiles; here: no waiting for more words


@pytest.mark.parametrize("case", pick("backchannel", 4) + pick("noise", 3),
                         ids=lambda c: c.id)
async def test_an_acknowledgement_or_a_noise_does_not_cut_the_reply(server, case):
    async with httpx.AsyncClient() as http:
        result = await run_injected_case(server.ws, http, case)
    assert not result["interrupted"], result
    assert not result["answered"] and not result["stored_interrupted"], result
    if result["paused"]:
        assert result["resumed"], result


@pytest.mark.parametrize("case", pick("interruption", 3), ids=lambda c: c.id)
async def test_a_real_interruption_pauses_at_once_and_cuts_the_reply(server, case):
    async with httpx.AsyncClient() as http:
        result = await run_injected_case(server.ws, http, case)
    assert result["interrupted"] and result["stored_interrupted"], result
    assert result["pause_ms"] <= 400 and result["interrupt_ms"] <= 900, result  # timing percentiles: BENCHMARKS.md
