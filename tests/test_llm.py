"""voice.llm through the real voice server (real WebSocket, fake STT/TTS) against a local OpenAI-compatible server
that speaks the real streaming format (tests/fake_openai.py), with the official openai SDK in between."""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import httpx
import pytest

from tests.fake_openai import (
    FakeOpenAI,
    cut_reply,
    error_reply,
    rate_limited,
    stall_reply,
    stream_error_reply,
    text_reply,
    tool_call,
    tool_reply,
)
from tests.harness import Client, LiveServer, free_port
from voice import create_app
from voice.llm import LLMAgent, tool
from voice.testing import FakeTranscriber, FakeTTS, fake_speech_frame

pytestmark = pytest.mark.asyncio

KEY = "sk-test-0123456789abcdef"
EVENTS: list[tuple] = []  # (what, detail, monotonic time) from the tools


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


async def get_weather(city: str, unit: Unit = Unit.CELSIUS, days: int | None = None) -> dict:
    """Current weather in a city.

    Args:
        city: the city's name, e.g. "Paris"
        unit: the temperature unit
        days: how many days of forecast to add
    """
    EVENTS.append(("weather start", city, time.monotonic()))
    await asyncio.sleep(0.4)
    EVENTS.append(("weather end", city, time.monotonic()))
    return {"city": city, "temperature": 11 if unit is Unit.CELSIUS else 52, "unit": unit.value}


def stock_price(ticker: str, exchange: Literal["NASDAQ", "NYSE"] = "NASDAQ") -> dict:
    """The last price of a share.

    :param ticker: the share's symbol, e.g. AAPL
    :param exchange: where it is traded
    """
    EVENTS.append(("stock start", ticker, time.monotonic()))
    time.sleep(0.4)  # a blocking function: it runs in a worker thread
    EVENTS.append(("stock end", ticker, time.monotonic()))
    return {"ticker": ticker, "price": 227.5, "exchange": exchange}


class Concierge(LLMAgent):
    instructions = "You are a test concierge."
    api_key = KEY
    model = "test-model"
    tools = (get_weather, stock_price)

    @tool(interruptible=False)
    async def book_table(self, name: str, people: int) -> str:
        """Book a table at the restaurant.

        Args:
            name: who the booking is for
            people: how many people come
        """
        EVENTS.append(("booking start", name, time.monotonic()))
        await asyncio.sleep(0.8)
        EVENTS.append(("booking end", name, time.monotonic()))
        return f"Booked a table for {people} under {name}."

    @tool
    async def search_menu(self, query: str) -> list[str]:
        """Search the menu."""
        EVENTS.append(("search start", query, time.monotonic()))
        await asyncio.sleep(2.0)
        EVENTS.append(("search end", query, time.monotonic()))
        return ["soup"]


class Plain(LLMAgent):
    instructions = "Be brief."
    api_key = KEY
    model = "test-model"


WEATHER_SCHEMA = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": 'the city\'s name, e.g. "Paris"'},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "the temperature unit",
                         "default": "celsius"},
                "days": {"type": ["integer", "null"], "description": "how many days of forecast to add",
                         "default": None},
            },
            "required": ["city"],
        },
    },
}
STOCK_SCHEMA = {
    "type": "function",
    "function": {
        "name": "stock_price",
        "description": "The last price of a share.",
        "parameters": {
            "type": "object",
            "properties": {
                "ticker": {"type": "string", "description": "the share's symbol, e.g. AAPL"},
                "exchange": {"type": "string", "enum": ["NASDAQ", "NYSE"], "description": "where it is traded",
                             "default": "NASDAQ"},
            },
            "required": ["ticker"],
        },
    },
}


@pytest.fixture
async def fake():
    EVENTS.clear()
    async with FakeOpenAI() as server:
        yield server


@asynccontextmanager
async def voice_server(tmp_path, fake: FakeOpenAI, **agent_settings):
    tts = FakeTTS(seconds_per_char=0.005)
    agents = {
        "concierge": Concierge.configured(base_url=fake.url, **agent_settings),
        "plain": Plain.configured(base_url=fake.url, **agent_settings),
    }
    app = create_app(agents, transcriber=FakeTranscriber(), tts=tts, db_path=str(tmp_path / "voice.db"))
    async with LiveServer(app) as srv:
        srv.tts = tts
        yield srv


async def connect(srv: LiveServer, agent: str, instance: str) -> Client:
    client = await Client.connect(f"{srv.ws}/agents/{agent}/{instance}")
    await client.start_call()
    return client


async def say(client: Client, text: str) -> int:
    """The user says ``text``; returns the message mark before the turn."""
    mark = client.mark()
    await client.send(fake_speech_frame("start"))
    await client.send(fake_speech_frame("final", text))
    return mark


async def history(srv: LiveServer, agent: str, instance: str) -> list[dict]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{srv.http}/agents/{agent}/{instance}/messages")
        r.raise_for_status()
        return r.json()["messages"]


async def stored(srv: LiveServer, agent: str, instance: str, predicate, timeout: float = 5.0) -> list[dict]:
    """The history once ``predicate(messages)`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        messages = await history(srv, agent, instance)
        if predicate(messages):
            return messages
        if time.monotonic() > deadline:
            raise AssertionError(f"history never matched: {messages}")
        await asyncio.sleep(0.05)


def first_audio_after(client: Client, mark: int) -> float:
    return next(t for t, m in client.messages[mark:] if isinstance(m, bytes))


async def reply(client: Client, mark: int, timeout: float = 10.0) -> str:
    return (await client.wait_for("transcript_end", after=mark, timeout=timeout))["text"]


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
    long_answer = "Here is a long story for you. " + " ".join(f"word{i}" for i in range(40)) + "."
    fake.queue(text_reply(long_answer, delay=0.1))
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "plain", "i1")
        await say(c, "tell me a long story")
        await c.wait_audio(timeout=5)
        await asyncio.sleep(0.4)  # the first sentence (0.15 s of audio) has been heard
        barge = c.mark()
        t_barge = time.monotonic()
        await c.send(fake_speech_frame("start"))
        await c.wait_for("playback_interrupt", after=barge)
        request = fake.requests[0]
        for _ in range(50):
            if request.disconnected_at is not None:
                break
            await asyncio.sleep(0.02)
        assert request.disconnected_at is not None, "the server never saw the client hang up"
        assert request.disconnected_at - t_barge < 0.5
        assert not request.finished and request.chunks_sent < 30  # it stopped generating
        sent = request.chunks_sent
        await asyncio.sleep(0.4)
        assert request.chunks_sent == sent
        msgs = await stored(srv, "plain", "i1", lambda ms: len(ms) == 2)
        assert msgs[1]["interrupted"] and msgs[1]["content"].startswith("Here is a long story for you.")
        assert len(msgs[1]["content"]) < len(long_answer) / 2
        assert c.count("transcript_end") == 0
        await c.close()


# --- tools ---------------------------------------------------------------------------------------------------------


async def test_a_tool_call_the_text_before_it_is_heard_first_and_the_result_goes_back(tmp_path, fake):
    call = tool_call("get_weather", {"city": "Zürich", "unit": "fahrenheit"}, "call_weather_1")
    fake.queue(
        tool_reply(call, text="Let me check the weather. ", piece=2),
        text_reply("It is 52 degrees in Zürich."),
    )
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "concierge", "t1")
        mark = await say(c, "what's the weather in zurich in fahrenheit")
        text = await reply(c, mark)
        assert text == "Let me check the weather. It is 52 degrees in Zürich."
        first, second = fake.requests
        assert first.body["tools"][:2] == [WEATHER_SCHEMA, STOCK_SCHEMA]
        names = [t["function"]["name"] for t in first.body["tools"]]
        assert sorted(names) == ["book_table", "get_weather", "search_menu", "stock_price"]
        booking = next(t for t in first.body["tools"] if t["function"]["name"] == "book_table")["function"]
        assert booking["parameters"]["properties"]["people"] == {"type": "integer", "description": "how many people come"}
        assert booking["parameters"]["required"] == ["name", "people"]
        # the first sentence reached the listener before the tool finished, and the model got the result after it
        weather_end = next(t for what, _, t in EVENTS if what == "weather end")
        assert first_audio_after(c, mark) < weather_end
        assert first_audio_after(c, mark) < second.received_at
        assert srv.tts.spoken[:2] == ["Let me check the weather.", "It is 52 degrees in Zürich."]
        assert second.messages[-2:] == [
            {"role": "assistant", "content": "Let me check the weather. ", "tool_calls": [
                {"id": "call_weather_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": call["arguments"]}}]},
            {"role": "tool", "tool_call_id": "call_weather_1",
             "content": '{"city": "Zürich", "temperature": 52, "unit": "fahrenheit"}'},
        ]
        await c.close()


async def test_parallel_tool_calls_run_concurrently_are_stored_and_rebuilt_exactly_next_turn(tmp_path, fake):
    calls = [tool_call("get_weather", {"city": "Paris"}, "call_a"), tool_call("stock_price", {"ticker": "AAPL"}, "call_b")]
    fake.queue(
        tool_reply(*calls),
        text_reply("It is 11 degrees in Paris and Apple trades at 227 dollars."),
        text_reply("You're welcome."),
    )
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "concierge", "p1")
        text = await reply(c, await say(c, "weather in paris and the apple share price"))
        assert text == "It is 11 degrees in Paris and Apple trades at 227 dollars."
        starts = {detail: t for what, detail, t in EVENTS if what.endswith("start")}
        ends = {detail: t for what, detail, t in EVENTS if what.endswith("end")}
        assert abs(starts["Paris"] - starts["AAPL"]) < 0.2  # both ran at once (0.4 s each)
        assert max(ends.values()) - min(starts.values()) < 0.7
        second = fake.requests[1]
        assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "tool", "tool"]
        assert [m["tool_call_id"] for m in second.messages[3:]] == ["call_a", "call_b"]
        assert second.messages[2]["content"] is None
        msgs = await stored(srv, "concierge", "p1", lambda ms: len(ms) == 4)
        assert [m["role"] for m in msgs] == ["user", "tool", "tool", "assistant"]
        weather = msgs[1]
        assert weather["content"] == 'get_weather(city="Paris") → {"city": "Paris", "temperature": 11, "unit": "celsius"}'
        assert weather["meta"]["name"] == "get_weather" and weather["meta"]["tool_call_id"] == "call_a"
        assert weather["meta"]["arguments"] == '{"city": "Paris"}' and not weather["meta"]["error"]
        await reply(c, await say(c, "thanks"))
        third = fake.requests[2]
        assert third.messages[:5] == second.messages  # the exact sequence the model saw, rebuilt from history
        assert third.messages[5:] == [
            {"role": "assistant", "content": "It is 11 degrees in Paris and Apple trades at 227 dollars."},
            {"role": "user", "content": "thanks"},
        ]
        await c.close()


async def test_calls_sent_whole_at_index_zero_are_still_two_calls(tmp_path, fake):
    calls = [tool_call("get_weather", {"city": "Oslo"}, "call_x"), tool_call("get_weather", {"city": "Rome"}, "call_y")]
    fake.queue(tool_reply(*calls, whole=True), text_reply("Oslo is colder than Rome."))
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "concierge", "o1")
        assert await reply(c, await say(c, "compare oslo and rome")) == "Oslo is colder than Rome."
        tool_messages = [m for m in fake.requests[1].messages if m["role"] == "tool"]
        assert [m["tool_call_id"] for m in tool_messages] == ["call_x", "call_y"]
        assert '"Oslo"' in tool_messages[0]["content"] and '"Rome"' in tool_messages[1]["content"]
        await c.close()


async def test_unknown_tools_and_bad_arguments_are_answered_to_the_model_as_errors(tmp_path, fake):
    calls = [
        tool_call("teleport", {"to": "Mars"}, "call_1"),
        tool_call("get_weather", '{"city": "Par', "call_2"),
        tool_call("stock_price", {"symbol": "AAPL"}, "call_3"),
        tool_call("get_weather", {"city": "Paris", "unit": "kelvin"}, "call_4"),
    ]
    fake.queue(tool_reply(*calls), text_reply("Sorry, I could not look that up."))
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "concierge", "e1")
        assert await reply(c, await say(c, "do impossible things")) == "Sorry, I could not look that up."
        results = {m["tool_call_id"]: m["content"] for m in fake.requests[1].messages if m["role"] == "tool"}
        assert results["call_1"].startswith("Error: there is no tool named 'teleport'")
        assert results["call_2"].startswith("Error: the arguments are not valid JSON")
        assert results["call_3"].startswith("Error: TypeError") and "ticker" in results["call_3"]
        assert results["call_4"].startswith("Error: ValueError") and "kelvin" in results["call_4"]
        assert "weather start" not in [what for what, *_ in EVENTS]  # nothing ran on bad input
        assert c.count("error") == 0
        msgs = await stored(srv, "concierge", "e1", lambda ms: len(ms) == 6)
        assert all(m["meta"]["error"] for m in msgs if m["role"] == "tool")
        await c.close()


async def test_a_non_interruptible_tool_finishes_and_is_recorded_when_the_user_interrupts(tmp_path, fake):
    calls = [tool_call("book_table", {"name": "Ada", "people": 4}, "call_book"),
             tool_call("search_menu", {"query": "soup"}, "call_menu")]
    fake.queue(
        tool_reply(*calls, text="One moment, I'm booking it now. "),
        text_reply("Your table for four is booked. What else?"),
    )
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "concierge", "b1")
        await say(c, "book a table for four under ada and find soup")
        await c.wait_audio(timeout=5)  # "One moment, I'm booking it now." is playing; the tools are running
        assert [what for what, *_ in EVENTS] == ["booking start", "search start"]
        barge = c.mark()
        await c.send(fake_speech_frame("start"))
        await c.wait_for("playback_interrupt", after=barge)
        msgs = await stored(srv, "concierge", "b1", lambda ms: any(m["role"] == "tool" for m in ms), timeout=3)
        tool_msgs = [m for m in msgs if m["role"] == "tool"]
        assert [m["meta"]["name"] for m in tool_msgs] == ["book_table"]
        assert tool_msgs[0]["meta"]["result"] == "Booked a table for 4 under Ada."
        await asyncio.sleep(2.2)
        assert "search end" not in [what for what, *_ in EVENTS]  # the interruptible one was cancelled
        assert len(fake.requests) == 1  # the interrupted turn did not go on to ask the model
        mark = await say(c, "is it done")
        assert await reply(c, mark) == "Your table for four is booked. What else?"
        sent = fake.requests[1].messages
        assert sent[-3:] == [
            {"role": "assistant", "content": "One moment, I'm booking it now. ", "tool_calls": [
                {"id": "call_book", "type": "function",
                 "function": {"name": "book_table", "arguments": '{"name": "Ada", "people": 4}'}}]},
            {"role": "tool", "tool_call_id": "call_book", "content": "Booked a table for 4 under Ada."},
            {"role": "user", "content": "is it done"},
        ]
        await c.close()


async def test_the_next_turn_waits_for_a_tool_that_outlived_an_interruption(tmp_path, fake):
    fake.queue(
        tool_reply(tool_call("book_table", {"name": "Bo", "people": 2}, "call_b2"), text="Booking. "),
        text_reply("Done, you are booked."),
    )
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "concierge", "b2")
        await say(c, "book for two under bo")
        await c.wait_audio(timeout=5)
        await c.send(fake_speech_frame("start"))
        mark = await say(c, "did it work")  # at once: the booking is still running
        assert await reply(c, mark) == "Done, you are booked."
        booking_end = next(t for what, _, t in EVENTS if what == "booking end")
        assert fake.requests[1].received_at >= booking_end
        assert {"role": "tool", "tool_call_id": "call_b2", "content": "Booked a table for 2 under Bo."} in (
            fake.requests[1].messages
        )
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
        if apology == BROKEN:
            assert text.startswith("The first part arrived.")
            assert srv.tts.spoken[0] == "The first part arrived."
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
