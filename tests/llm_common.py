"""What the voice.llm tests share: agents with typed tools, the voice server on a fake model, and a client that talks
to it (fake STT frames) and reads the history."""

from __future__ import annotations

import asyncio
import enum
import time
from contextlib import asynccontextmanager
from typing import Literal

import httpx
import pytest

from tests.fake_openai import FakeOpenAI
from tests.harness import Client, LiveServer
from voice import create_app
from voice.llm import LLMAgent, tool
from voice.testing import FakeTranscriber, FakeTTS, fake_speech_frame

KEY = "sk-test-0123456789abcdef"
EVENTS: list[tuple] = []  # (what, detail, monotonic time) from the tools; cleared by voice_server


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
    """A local OpenAI-compatible server (tests/fake_openai.py) for one test."""
    async with FakeOpenAI() as server:
        yield server


@asynccontextmanager
async def voice_server(tmp_path, fake: FakeOpenAI, **agent_settings):
    """The voice server (fake STT, fast fake TTS) with ``concierge`` and ``plain`` on ``fake``."""
    EVENTS.clear()
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
