"""What only the PostgreSQL store has to handle: many processes creating the schema at once, and the server dropping
connections (restart, failover, ``pg_terminate_backend``) — idle ones and ones in the middle of a query."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from voice.history.postgres import CONNECTION_LOST, PostgresStore
from voice.history.store import Message


@pytest_asyncio.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(postgres_dsn, max_size=3)
    await store.start()
    yield store
    await store.close()


@pytest_asyncio.fixture
async def admin(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(postgres_dsn)
    yield conn
    await conn.close()


async def test_many_processes_create_the_schema_at_once(postgres_dsn: str) -> None:
    stores = [PostgresStore(postgres_dsn, max_size=1) for _ in range(6)]
    await asyncio.gather(*(s.start() for s in stores))
    written = await stores[0].add_message("a", "i", Message("user", "hello"))
    assert await stores[5].messages("a", "i") == [written]
    for s in stores:
        await s.close()
    again = PostgresStore(postgres_dsn)  # a restart finds the schema in place
    await again.start()
    assert await again.messages("a", "i") == [written]
    await again.close()


async def test_idle_connections_killed_by_the_server_are_replaced(store: PostgresStore,
                                                                 admin: asyncpg.Connection) -> None:
    await asyncio.gather(*(store.messages("a", "i") for _ in range(3)))  # fill the pool
    killed = await admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()"
    )
    assert killed >= 1
    await asyncio.sleep(0.2)
    written = await store.add_message("a", "i", Message("user", "after the restart"))  # a write too
    assert await store.messages("a", "i") == [written]


async def _killed_mid_query(admin: asyncpg.Connection, table: str, call: Awaitable[Any]) -> asyncio.Task[Any]:
    """Start ``call`` while ``table`` is locked, kill the backend running it once it waits for the lock, then
    release the lock; returns the task running ``call``."""
    async with admin.transaction():
        await admin.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        task = asyncio.ensure_future(call)
        deadline = time.monotonic() + 5
        while not (pids := await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )):
            assert time.monotonic() < deadline and not task.done(), "the query never waited for the lock"
            await asyncio.sleep(0.01)
        for row in pids:
            await admin.execute("SELECT pg_terminate_backend($1)", row["pid"])
    return task


async def test_a_read_is_retried_on_a_fresh_connection(store: PostgresStore, admin: asyncpg.Connection) -> None:
    written = await store.add_message("a", "i", Message("user", "still here"))
    read = await _killed_mid_query(admin, "voice_messages", store.messages("a", "i"))
    assert await asyncio.wait_for(read, 10) == [written]


async def test_a_claim_is_retried_on_a_fresh_connection(store: PostgresStore, admin: asyncpg.Connection) -> None:
    s = await store.add_schedule("a", "i", 0, "ping", None)
    claim = await _killed_mid_query(admin, "voice_schedules", store.claim_due("p", lease=30))
    assert [c.id for c in await asyncio.wait_for(claim, 10)] == [s.id]


Write = Callable[[PostgresStore], Awaitable[Any]]


@pytest.mark.parametrize(("table", "write"), [
    ("voice_messages", lambda s: s.add_message("a", "i", Message("user", "lost"))),
    ("voice_schedules", lambda s: s.add_schedule("a", "i", 0, "lost", None)),
], ids=["add_message", "add_schedule"])
async def test_a_write_cut_off_mid_query_raises(store: PostgresStore, admin: asyncpg.Connection, table: str,
                                                write: Write) -> None:
    task = await _killed_mid_query(admin, table, write(store))
    with pytest.raises(CONNECTION_LOST):
        await asyncio.wait_for(task, 10)
    assert await store.messages("a", "i") == [] and await store.schedules() == []  # not applied, not doubled
    await write(store)  # and the store works again
