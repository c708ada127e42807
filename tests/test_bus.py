"""The cross-process bus: two PostgresBus objects on one real PostgreSQL server stand for two processes; the
LocalBus stays inside its process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import pytest_asyncio

from voice.history.bus import MAX_PAYLOAD_BYTES, Bus, LocalBus
from voice.history.postgres_bus import PostgresBus

MakeBus = Callable[..., Awaitable[PostgresBus]]


class Inbox:
    """A subscriber that remembers what it got and when."""

    def __init__(self) -> None:
        self.got: list[tuple[float, dict[str, Any]]] = []
        self._arrived = asyncio.Event()

    def __call__(self, payload: dict[str, Any]) -> None:
        self.got.append((time.monotonic(), payload))
        self._arrived.set()

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [p for _, p in self.got]

    async def wait_for(self, count: int, timeout: float = 1.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < count:
            self._arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"got {len(self.got)} of {count} notices in {timeout} s: {self.payloads}")
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                pass


@pytest_asyncio.fixture
async def make_bus(postgres_dsn: str) -> AsyncIterator[MakeBus]:
    buses: list[PostgresBus] = []

    async def make(**kwargs: Any) -> PostgresBus:
        bus = PostgresBus(postgres_dsn, **kwargs)
        await bus.start()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close()


async def kill(dsn: str, application_name: str) -> int:
    """pg_terminate_backend every connection named ``application_name``; how many there were."""
    admin = await asyncpg.connect(dsn)
    try:
        return await admin.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = $1) t", application_name,
        )
    finally:
        await admin.close()


async def test_two_processes_see_each_others_notices_within_a_second(make_bus: MakeBus) -> None:
    one, two = await make_bus(name="one"), await make_bus(name="two")
    inbox_one, inbox_two = Inbox(), Inbox()
    await one.subscribe("speak", inbox_one)
    await two.subscribe("speak", inbox_two)

    sent = time.monotonic()
    await one.publish("speak", {"instance": "alice", "message_id": 41, "text": "grüß dich 👋"})
    await inbox_two.wait_for(1)
    await two.publish("speak", {"instance": "bob", "message_id": 42})
    await inbox_one.wait_for(2)
    await asyncio.sleep(0.3)  # nothing more arrives: each notice once per process, the publisher's own included
    assert inbox_two.got[0][0] - sent < 1.0
    expected = [{"instance": "alice", "message_id": 41, "text": "grüß dich 👋"}, {"instance": "bob", "message_id": 42}]
    assert inbox_one.payloads == expected and inbox_two.payloads == expected


async def test_only_subscribed_channels_arrive_and_unsubscribe_stops_them(make_bus: MakeBus) -> None:
    one, two = await make_bus(name="one"), await make_bus(name="two")
    speak, schedules, failing = Inbox(), Inbox(), Inbox()

    def broken(payload: dict[str, Any]) -> None:
        raise RuntimeError("a subscriber's bug")

    async def async_subscriber(payload: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        failing(payload)

    await two.subscribe("speak", broken)  # does not keep the others from getting it
    await two.subscribe("speak", speak)
    await two.subscribe("speak", async_subscriber)
    await two.subscribe("schedule.added", schedules)
    await one.publish("schedule.added", {"id": "s1"})
    await one.publish("speak", {"id": 1})
    await one.publish("other", {"id": 2})
    await speak.wait_for(1)
    await schedules.wait_for(1)
    await failing.wait_for(1)
    await two.unsubscribe("speak", speak)
    await two.unsubscribe("speak", async_subscriber)
    await two.unsubscribe("speak", broken)
    await one.publish("speak", {"id": 3})
    await one.publish("schedule.added", {"id": "s2"})
    await schedules.wait_for(2)
    assert speak.payloads == [{"id": 1}] and failing.payloads == [{"id": 1}]
    assert schedules.payloads == [{"id": "s1"}, {"id": "s2"}]


async def test_the_listener_reconnects_after_its_connection_is_killed(make_bus: MakeBus, postgres_dsn: str) -> None:
    publisher, listener = await make_bus(name="publisher"), await make_bus(name="listener", timeout=2.0)
    inbox = Inbox()
    await listener.subscribe("speak", inbox)
    await publisher.publish("speak", {"n": 1})
    await inbox.wait_for(1)

    assert await kill(postgres_dsn, "listener") == 1
    deadline = time.monotonic() + 5
    while listener.connections < 2:
        assert time.monotonic() < deadline, "the listener did not reconnect"
        await asyncio.sleep(0.02)
    await publisher.publish("speak", {"n": 2})  # a notice published while it was down may be lost; this one not
    await inbox.wait_for(2)
    assert inbox.payloads[-1] == {"n": 2}

    assert await kill(postgres_dsn, "publisher") == 1
    await publisher.publish("speak", {"n": 3})  # the publisher's own connection is gone: it reconnects to send
    await inbox.wait_for(3)
    assert inbox.payloads[-1] == {"n": 3} and publisher.connections == 2


class FreezingProxy:
    """A TCP proxy to PostgreSQL whose current connections can be frozen: bytes stop flowing both ways and no side
    is told (what a cut network cable looks like). New connections flow normally."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._frozen: list[asyncio.Event] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        frozen = asyncio.Event()
        self._frozen.append(frozen)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if frozen.is_set():
                    await asyncio.Future()  # never again
                dst.write(data)
                await dst.drain()

        pipes = {asyncio.create_task(pipe(reader, up_writer)), asyncio.create_task(pipe(up_reader, writer))}
        self._tasks |= pipes
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)  # one side closed: close both
        finally:
            for task in pipes:
                task.cancel()
            writer.close()
            up_writer.close()

    def freeze(self) -> None:
        for frozen in self._frozen:
            frozen.set()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def test_the_listener_catches_a_silently_dead_connection_with_its_ping(make_bus: MakeBus,
                                                                            postgres_dsn: str) -> None:
    url = urlsplit(postgres_dsn)
    proxy = FreezingProxy(url.port or 5432)
    through_proxy = url._replace(netloc=f"{url.username}@127.0.0.1:{await proxy.start()}").geturl()
    publisher = await make_bus(name="publisher")
    listener = PostgresBus(through_proxy, name="listener", ping_interval=0.2, timeout=0.5)
    await listener.start()
    try:
        inbox = Inbox()
        await listener.subscribe("speak", inbox)
        proxy.freeze()
        await publisher.publish("speak", {"n": 1})  # lost: the listener's connection is dead and nobody knows yet
        deadline = time.monotonic() + 5
        while listener.connections < 2:
            assert time.monotonic() < deadline, "the listener did not notice the dead connection"
            await asyncio.sleep(0.02)
        await publisher.publish("speak", {"n": 2})
        await inbox.wait_for(1)
        assert inbox.payloads == [{"n": 2}]
    finally:
        await listener.close()
        await proxy.close()


@pytest_asyncio.fixture(params=["local", "postgres"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    bus = LocalBus() if request.param == "local" else PostgresBus(request.getfixturevalue("postgres_dsn"))
    await bus.start()
    yield bus
    await bus.close()


async def test_notices_are_small_json_objects(bus: Bus) -> None:
    inbox = Inbox()
    await bus.subscribe("big", inbox)
    text = "ü" * ((MAX_PAYLOAD_BYTES - len('{"t":""}')) // 2)  # two bytes each: at the limit in bytes
    await bus.publish("big", {"t": text})
    await inbox.wait_for(1)
    assert inbox.payloads == [{"t": text}]
    with pytest.raises(ValueError, match="send ids"):
        await bus.publish("big", {"t": text + "ü"})
    with pytest.raises(ValueError):
        await bus.publish("c" * 64, {})
    with pytest.raises(TypeError):
        await bus.publish("big", ["not", "an", "object"])  # type: ignore[arg-type]


async def test_local_bus_delivers_to_its_own_process_only() -> None:
    here, there = LocalBus(), LocalBus()  # two processes' buses
    mine, theirs = Inbox(), Inbox()
    await here.subscribe("speak", mine)
    await there.subscribe("speak", theirs)
    await here.publish("speak", {"id": 7})
    await mine.wait_for(1)
    await asyncio.sleep(0.1)
    assert mine.payloads == [{"id": 7}] and theirs.payloads == []
    await here.unsubscribe("speak", mine)
    await here.publish("speak", {"id": 8})
    await asyncio.sleep(0.1)
    assert mine.payloads == [{"id": 7}]
    await here.close()
    await there.close()
