"""voice.llm through the real voice server (real WebSocket, fake STT/TTS) against a local OpenAI-compatible server
that speaks the real streaming format (tests/fake_openai.py), with the official openai SDK in between: streaming,
history, interruption, failures, configuration and ``voice serve``. Tools: test_llm_tools.py."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fake_openai import (
    cut_reply,
    error_reply,
    rate_limited,
    stall_reply,
    stream_error_reply,
    text_reply,
)
from tests.harness import Client, LiveServer, free_port
from tests.llm_common import KEY, Plain, connect, first_audio_after, reply, say, stored, voice_server
from voice import create_app
from voice.llm import LLMAgent
from voice.testing import FakeTranscriber, FakeTTS, fake_speech_frame

# --- streaming, history, interruption ------------------------------------------------------------------------------


async def test_streamed_answer_is_spoken_sentence_by_sentence_while_it_arrives(tmp_path, fake):
    answer = "The capital of France is Paris. It is known for the Eiffel Tower. Would you like to know more?"
    fake.queue(text_reply(answer, delay=0.06))
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "plain", "s1")
        mark = await say(c, "what is the capital of france")
        assert await reply(c, mark) == answer
        request = fake.requests[0]
        assert request.path == "/v1/chat/completions"
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.body["model"] == "test-model" and request.body["stream"] is True
        assert "tools" not in request.body
        assert request.messages == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "what is the capital of france"},
        ]
        assert srv.tts.spoken == [
            "The capital of France is Paris.", "It is known for the Eiffel Tower.", "Would you like to know more?"
        ]
        # the first sentence was heard while the model was still writing the last one
        assert first_audio_after(c, mark) < request.sent_at[-1] - 0.3
        await c.close()


async def test_history_reaches_the_model_on_the_next_turn(tmp_path, fake):
    fake.queue(text_reply("Paris is the capital."), text_reply("About two million people live there."))
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "plain", "h1")
        await reply(c, await say(c, "what is the capital of france"))
        await stored(srv, "plain", "h1", lambda ms: [m["role"] for m in ms] == ["user", "assistant"])
        assert await reply(c, await say(c, "how many people live there")) == "About two million people live there."
        assert fake.requests[1].messages == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "what is the capital of france"},
            {"role": "assistant", "content": "Paris is the capital."},
            {"role": "user", "content": "how many people live there"},
        ]
        await c.close()


async def test_an_interruption_closes_the_http_stream(tmp_path, fake):
    long_answer = "Here is a long story for you. " + " ".join(f"word{i}" for i in range(80)) + "."
    fake.queue(text_reply(long_answer, delay=0.1))
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "plain", "i1")
        await say(c, "tell me a long story")
        await c.wait_audio(timeout=5)
        await asyncio.sleep(0.4)  # the first sentence (0.15 s of audio) has been heard
        barge = c.mark()
        await c.send(fake_speech_frame("start"))
        await c.wait_for("playback_interrupt", after=barge)  # sustained speech: the agent yields the floor
        t_barge = time.monotonic()
        request = fake.requests[0]
        for _ in range(50):
            if request.disconnected_at is not None:
                break
            await asyncio.sleep(0.02)
        assert request.disconnected_at is not None, "the server never saw the client hang up"
        assert request.disconnected_at - t_barge < 0.5  # the model stops generating when the reply ends
        assert not request.finished and request.chunks_sent < 60  # of ~90: it stopped generating
        sent = request.chunks_sent
        await asyncio.sleep(0.4)
        assert request.chunks_sent == sent
        msgs = await stored(srv, "plain", "i1", lambda ms: len(ms) == 2)
        assert msgs[1]["interrupted"] and msgs[1]["content"].startswith("Here is a long story for you.")
        assert len(msgs[1]["content"]) < len(long_answer) / 2
        assert c.count("transcript_end") == 0
        await c.close()


# --- failures ------------------------------------------------------------------------------------------------------

APOLOGY = Plain.apology_text
BROKEN = Plain.broken_reply_text

FAILURES = {  # replies, agent settings, requests expected, what is said, what is logged
    "401": ([error_reply(401, f"Incorrect API key provided: {KEY}.", code="invalid_api_key")], {}, 1, APOLOGY,
            "AuthenticationError HTTP 401"),
    "429": ([rate_limited("1")] * 3, {}, 3, APOLOGY, "RateLimitError HTTP 429"),
    "500": ([error_reply(500, "The server had an error", kind="server_error")] * 3, {}, 3, APOLOGY,
            "InternalServerError HTTP 500"),
    "abort": ([cut_reply("The first part arrived. And then", abort=True)], {}, 1, BROKEN, "APIConnectionError"),
    "eof": ([cut_reply("The first part arrived. And then", abort=False)], {}, 1, BROKEN, "IncompleteReply"),
    "error-event": ([stream_error_reply("The first part arrived. And then")], {}, 1, BROKEN, "APIError"),
    # the SDK times out each attempt and retries once
    "stall-before-headers": ([stall_reply(5, before_headers=True)] * 2, {"timeout": 1.0, "max_retries": 1}, 2,
                             APOLOGY, "APITimeoutError"),
    # the caller's patience runs out first
    "slow-start": ([stall_reply(5, before_headers=True)], {"max_wait": 1.0}, 1, APOLOGY, "TimeoutError"),
    "stall-mid-stream": ([stall_reply(5, before_headers=False)], {"timeout": 1.0}, 1, APOLOGY, "APITimeoutError"),
}


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_a_failing_model_gives_a_spoken_apology_and_the_next_turn_works(tmp_path, fake, caplog, failure):
    replies, settings, attempts, apology, reason = FAILURES[failure]
    fake.queue(*replies, text_reply("Now it works again."))
    caplog.set_level(logging.WARNING, logger="voice.llm")
    async with voice_server(tmp_path, fake, **settings) as srv:
        c = await connect(srv, "plain", f"f-{failure}")
        mark = await say(c, "hello there")
        text = await reply(c, mark, timeout=15)
        assert text.endswith(apology)
        if apology == BROKEN:  # what arrived was heard, the broken-off sentence ends before the apology
            assert text == f"The first part arrived. And then… {BROKEN}"
            assert srv.tts.spoken[0] == "The first part arrived."  # spoken while the stream still ran
            assert " ".join(srv.tts.spoken).startswith(f"The first part arrived. And then… {BROKEN}")
        assert apology in " ".join(srv.tts.spoken)  # spoken, not only shown
        error = await c.wait_for("error", after=mark, code="llm_failed")
        assert error["message"] == f"the language model failed: {reason.split()[0]}"
        assert len(fake.requests) == attempts
        logged = [r.getMessage() for r in caplog.records if r.name == "voice.llm"]
        assert any(reason in line for line in logged), logged
        assert KEY not in caplog.text
        n = len(fake.requests)
        await stored(srv, "plain", f"f-{failure}", lambda ms: len(ms) == 2)
        mark = await say(c, "try again")
        assert await reply(c, mark, timeout=10) == "Now it works again."
        assert fake.requests[n].messages[-1] == {"role": "user", "content": "try again"}
        await c.close()


async def test_a_rate_limit_is_retried_after_retry_after_and_then_answered(tmp_path, fake):
    fake.queue(rate_limited("1"), text_reply("Here you are."))
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "plain", "r1")
        assert await reply(c, await say(c, "hello")) == "Here you are."
        first, second = fake.requests
        assert 0.9 <= second.received_at - first.received_at < 2.0
        assert second.headers["x-stainless-retry-count"] == "1"
        assert c.count("error") == 0
        await c.close()


# --- configuration -------------------------------------------------------------------------------------------------


class FromEnvironment(LLMAgent):
    """Configured by nothing but the environment."""


async def test_the_environment_configures_url_model_and_key(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("VOICE_LLM_URL", fake.url)
    monkeypatch.setenv("VOICE_LLM_MODEL", "env-model")
    monkeypatch.delenv("VOICE_LLM_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai-var")
    fake.queue(text_reply("First."), text_reply("Second."))
    app = create_app({"env": FromEnvironment}, transcriber=FakeTranscriber(), tts=FakeTTS(),
                     db_path=str(tmp_path / "v.db"))
    async with LiveServer(app) as srv:
        c = await connect(srv, "env", "x")
        await reply(c, await say(c, "one"))
        monkeypatch.setenv("VOICE_LLM_API_KEY", "sk-from-voice-var")
        await reply(c, await say(c, "two"))
        assert [r.body["model"] for r in fake.requests] == ["env-model", "env-model"]
        assert [r.headers["authorization"] for r in fake.requests] == [
            "Bearer sk-from-openai-var", "Bearer sk-from-voice-var"]
        await c.close()


# --- voice serve -----------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def serve_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE_LLM_", "OPENAI_"))}
    return env | {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"} | extra


async def test_voice_serve_with_llm_flags_answers_through_the_model(tmp_path, fake):
    fake.queue(text_reply("Hello from the model."))
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voice.cli", "serve", "--port", str(port), "--db", str(tmp_path / "v.db"),
        "--llm-url", fake.url, "--llm-model", "cli-model",
        cwd=ROOT, env=serve_env(VOICE_LLM_API_KEY="sk-cli-key"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    output = bytearray()

    async def collect() -> None:
        while chunk := await proc.stdout.read(4096):
            output.extend(chunk)

    reader = asyncio.create_task(collect())
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(600):
                assert proc.returncode is None, output.decode()
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)).status_code == 200:
                        break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
        c = await Client.connect(f"ws://127.0.0.1:{port}/agents/assistant/cli")
        await c.send({"type": "text_message", "text": "hello model"})
        assert (await c.wait_for("transcript_end", timeout=20))["text"] == "Hello from the model."
        (request,) = fake.requests
        assert request.body["model"] == "cli-model"
        assert request.headers["authorization"] == "Bearer sk-cli-key"
        assert request.messages[0]["role"] == "system"
        assert request.messages[-1] == {"role": "user", "content": "hello model"}
        await c.close()
        assert b"sk-cli-key" not in output
    finally:
        proc.terminate()
        await proc.wait()
        await reader


@pytest.mark.parametrize("how", ["flag", "env"])
async def test_voice_serve_without_openai_names_the_extra_in_one_line(tmp_path, how):
    blocked = "import sys; sys.modules['openai'] = None; from voice.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["serve", "--port", "1", "--db", str(tmp_path / "v.db")]
    env = serve_env()
    if how == "flag":
        args += ["--llm-url", "http://127.0.0.1:9/v1"]
    else:
        env["VOICE_LLM_MODEL"] = "llama3.2"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", blocked, *args, cwd=ROOT, env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, (out, err)
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "pip install 'voice[openai]'" in lines[0], lines
