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

LONG = " Here is a longer answer, so that there is time to talk over me: mild all week, and sunny by the weekend."


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


def at_most_one_miss(failures: list[str], n: int) -> None:
    """Real speech from synthetic voices through Whisper tiny on a shared 2-core machine: one case in a kind may
    go wrong (a misheard word, a late transcript); two mean the behaviour is broken. bench/turns.py has the rates."""
    assert len(failures) <= 1, f"{len(failures)} of {n} cases failed:\n" + "\n".join(failures)


async def test_pauses_inside_a_turn_keep_it_one_turn_and_a_long_gap_makes_two(server):
    cases = pick("hesitation", 2) + pick("midpause", 1) + pick("two_turns", 1)
    failures = []
    for case in cases:
        result = await run_stream_case(server.ws, case)
        if result["turns"] != len(case.expected_turns) or result["wer"] > 0.5:
            failures.append(f"{case.id}: {result['turns']} turns, heard {result['heard']}")
    at_most_one_miss(failures, len(cases))


async def test_a_complete_question_is_answered_promptly(server):
    cases = pick("complete", 2)
    failures = []
    for case in cases:
        result = await run_stream_case(server.ws, case)
        assert result["turns"] == 1, (case.id, result["heard"])
        # the benchmark measures the percentiles; here: answered without waiting for more words (max 2.5 s)
        if result["wer"] > 0.5 or result["v2v_ms"] > 1500:
            failures.append(f"{case.id}: {result['v2v_ms']:.0f} ms, heard {result['heard']}")
    at_most_one_miss(failures, len(cases))


async def test_an_acknowledgement_or_a_noise_does_not_cut_the_reply(server):
    cases = pick("backchannel", 3) + pick("noise", 2)
    failures = []
    async with httpx.AsyncClient() as http:
        for case in cases:
            result = await run_injected_case(server.ws, http, case)
            if (result["interrupted"] or result["answered"] or result["stored_interrupted"]
                    or (result["paused"] and not result["resumed"])):
                failures.append(f"{case.id} ({case.injection!r}): {result}")
    at_most_one_miss(failures, len(cases))


async def test_a_real_interruption_pauses_at_once_and_cuts_the_reply(server):
    async with httpx.AsyncClient() as http:
        for case in pick("interruption", 2):
            result = await run_injected_case(server.ws, http, case)
            assert result["interrupted"] and result["stored_interrupted"], result
            # timing percentiles: BENCHMARKS.md; here: paused before words are known, cut within the 2.5 s bound
            assert result["pause_ms"] <= 1000 and result["interrupt_ms"] <= 2500, result
