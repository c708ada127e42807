"""Runtimes that share one database, in one test process (two runtimes on one real PostgreSQL database stand for
two processes): which store a URL selects (and the one-line error without asyncpg, in ``voice serve`` too), history
refreshed from what the other wrote, a schedule added by one waking the other's scheduler by a notice rather than a
poll, and a failing schedule retried across them to its bound, then kept. The real processes are in
tests/test_cluster.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from tests.cluster import ROOT
from voice import TurnContext, VoiceAgent, create_app
from voice.config import Settings
from voice.engine import Runtime
from voice.engine.runtime import SHARED_POLL_SECONDS
from voice.history import SQLiteStore, StoreConfigError, Transcript, open_store
from voice.history.postgres import PostgresStore
from voice.testing import FakeTranscriber, FakeTTS

FIRED: list[tuple[str, str, float]] = []  # (runtime node, method, when)


class Keeper(VoiceAgent):
    async def on_turn(self, transcript: str, ctx: TurnContext):
        return "ok"

    async def tick(self, payload) -> None:
        FIRED.append((self._host.node, "tick", time.monotonic()))

    async def boom(self, payload) -> None:
        FIRED.append((self._host.node, "boom", time.monotonic()))
        raise RuntimeError("always")


MakeRuntime = Callable[..., Awaitable[Runtime]]


@pytest_asyncio.fixture
async def make_runtime(postgres_dsn: str) -> AsyncIterator[MakeRuntime]:
    FIRED.clear()
    runtimes: list[Runtime] = []

    async def make(**settings) -> Runtime:
        runtime = Runtime({"keeper": Keeper}, Settings(database_url=postgres_dsn, **settings),
                          transcriber=FakeTranscriber(), tts=FakeTTS())
        await runtime.start(warm_up=False)
        runtimes.append(runtime)
        return runtime

    yield make
    for runtime in runtimes:
        await runtime.stop()


def test_the_url_selects_the_store(tmp_path) -> None:
    assert isinstance(open_store(Settings(db_path=str(tmp_path / "a.db"))), SQLiteStore)
    for url in ("postgresql://u:secret@db.example.com:5432/voice", "postgres://u@localhost/voice"):
        store = open_store(Settings(database_url=url))
        assert isinstance(store, PostgresStore) and store.shared and store.dsn == url
    with pytest.raises(StoreConfigError, match="postgresql://") as bad:
        open_store(Settings(database_url="mysql://u:secret@db/voice"))
    assert "secret" not in str(bad.value)
    app = create_app({"keeper": Keeper}, transcriber=FakeTranscriber(), tts=FakeTTS(),
                     database_url="postgresql://u@localhost/voice")
    assert isinstance(app.state.voice.runtime.store, PostgresStore)


def test_without_asyncpg_a_postgres_url_stops_start_up_naming_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # what "not installed" looks like to an import
    monkeypatch.delitem(sys.modules, "voice.history.postgres")
    with pytest.raises(StoreConfigError) as missing:
        open_store(Settings(database_url="postgresql://u@localhost/voice"))
    assert "pip install 'voice[postgres]'" in str(missing.value)
    hide = "import sys; sys.modules['asyncpg'] = None; from voice.cli import main; sys.exit(main())"
    env = dict(os.environ, VOICE_DATABASE_URL="postgresql://u:secret@localhost/voice", VOICE_DB="/nonexistent/x.db")
    result = subprocess.run([sys.executable, "-c", hide, "serve", "tests.fake_app:app", "--port", "1"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "voice serve: VOICE_DATABASE_URL is a PostgreSQL URL, which needs asyncpg: pip install 'voice[postgres]'"
    ]


async def test_refresh_brings_in_what_another_process_stored_before_our_own_last_write(postgres_dsn: str) -> None:
    one, two = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    for store in (one, two):
        await store.start()
    try:
        mine = await Transcript.load(one, "keeper", "x", 10)
        theirs = await Transcript.load(two, "keeper", "x", 10)
        await mine.user_turn("hello")
        await theirs.add("assistant", "Reminder: stretch.")  # the other process, between our writes
        await mine.reply("Hi there.", interrupted=False)
        assert [m.content for m in mine.recent(10)] == ["hello", "Hi there."]
        await mine.refresh()
        assert [m.content for m in mine.recent(10)] == ["hello", "Reminder: stretch.", "Hi there."]
        await mine.refresh()  # nothing new: nothing twice
        assert len(mine.recent(10)) == 3
    finally:
        for store in (one, two):
            await store.close()


async def test_a_schedule_added_elsewhere_wakes_this_scheduler_by_a_notice(make_runtime: MakeRuntime) -> None:
    adder, firer = await make_runtime(), await make_runtime()
    await adder.scheduler.stop()  # only the other runtime fires
    agent = await adder.acquire("keeper", "k")
    added = time.monotonic()
    await agent.schedule(0.3, "tick")
    for _ in range(100):
        if FIRED:
            break
        await asyncio.sleep(0.02)
    [(node, method, at)] = FIRED
    assert node == firer.node and method == "tick"
    assert at - added < 0.3 + 0.5 < SHARED_POLL_SECONDS  # on time: woken by the notice, not by its 5 s look
    adder.release(agent)


async def test_a_failing_schedule_is_retried_across_processes_to_its_bound_then_kept(make_runtime) -> None:
    one = await make_runtime(schedule_retry_seconds=0.1, schedule_attempts=3)
    await make_runtime(schedule_retry_seconds=0.1, schedule_attempts=3)
    agent = await one.acquire("keeper", "k")
    schedule_id = await agent.schedule(0.0, "boom")
    one.release(agent)
    for _ in range(150):
        [item] = await one.store.schedules()
        if item.failed:
            break
        await asyncio.sleep(0.02)
    assert item.id == schedule_id and item.failed and item.attempts == 3 and "always" in item.last_error
    await asyncio.sleep(0.5)
    assert [method for _, method, _ in FIRED] == ["boom"] * 3  # three runs in all, whichever runtime ran each
