"""One contract for every :class:`~voice.history.store.Store`: the same tests run against SQLiteStore (a file in WAL
mode) and PostgresStore (a real PostgreSQL 15 server, a fresh database per test). Two store objects on one database
stand for two processes."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from voice.history.postgres import PostgresStore
from voice.history.sqlite import SQLiteStore
from voice.history.store import Message, Store

MakeStore = Callable[[], Awaitable[Store]]


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def make_store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[MakeStore]:
    """Opens stores on one shared database; every call is another "process"."""
    if request.param == "sqlite":
        path = tmp_path / "voice.db"

        def new() -> Store:
            return SQLiteStore(path)
    else:
        dsn = request.getfixturevalue("postgres_dsn")

        def new() -> Store:
            return PostgresStore(dsn, max_size=4)

    opened: list[Store] = []

    async def make() -> Store:
        store = new()
        await store.start()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest_asyncio.fixture
async def store(make_store: MakeStore) -> Store:
    return await make_store()


# --- history ---------------------------------------------------------------------------------------------------


async def test_messages_oldest_first_with_limit_and_after_id(store: Store) -> None:
    before = time.time()
    added = [await store.add_message("a", "i", Message("user" if n % 2 else "assistant", f"m{n}")) for n in range(6)]
    ids = [m.id for m in added]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(set(ids))
    assert all(before - 5 < m.created_at < time.time() + 5 for m in added)  # the store stamps it

    assert [m.content for m in await store.messages("a", "i")] == [f"m{n}" for n in range(6)]
    assert [m.content for m in await store.messages("a", "i", limit=2)] == ["m4", "m5"]
    assert [m.content for m in await store.messages("a", "i", after_id=ids[2])] == ["m3", "m4", "m5"]
    assert [m.content for m in await store.messages("a", "i", limit=2, after_id=ids[1])] == ["m4", "m5"]
    assert await store.messages("a", "i", after_id=ids[-1]) == []
    assert await store.messages("a", "i", limit=0) == []
    assert await store.messages("a", "other") == [] and await store.messages("b", "i") == []
    assert await store.messages("a", "i") == added  # what add_message returned is what is read back


async def test_text_meta_and_flags_round_trip(store: Store) -> None:
    content = "Grüße, 東京 🎙️ — שלום «x» e\u0301 \\n 'quoted' \"double\""
    meta = {"tool": "wetter", "args": {"ort": "Zürich", "tage": [1, 2.5, None, True]}, "🔑": "värde", "empty": {}}
    written = await store.add_message("agent", "ünï", Message("assistant", content, interrupted=True, meta=meta))
    plain = await store.add_message("agent", "ünï", Message("user", ""))
    back, back_plain = await store.messages("agent", "ünï")
    assert back == written and back.content == content and back.meta == meta and back.interrupted is True
    assert back_plain == plain and back_plain.meta is None and back_plain.interrupted is False


async def test_a_nul_character_does_not_break_a_write(store: Store) -> None:
    # PostgreSQL cannot store NUL in text or JSONB: it keeps U+FFFD in its place; SQLite keeps it as is
    await store.add_message("a", "i\x00", Message("user", "before\x00after", meta={"k\x00": ["v\x00"]}))
    await store.add_schedule("a", "i\x00", 60, "m", {"text": "x\x00y"})
    (m,) = await store.messages("a", "i\x00")
    (s,) = await store.schedules("a", "i\x00")
    nul_as_shown = {"before\x00after", "before\ufffdafter"}
    assert m.content in nul_as_shown and m.meta in ({"k\x00": ["v\x00"]}, {"k\ufffd": ["v\ufffd"]})
    assert s.payload in ({"text": "x\x00y"}, {"text": "x\ufffdy"})


async def test_given_created_at_is_kept(store: Store) -> None:
    await store.add_message("a", "i", Message("user", "old", created_at=1_600_000_000.25))
    (m,) = await store.messages("a", "i")
    assert m.created_at == pytest.approx(1_600_000_000.25, abs=1e-5)


async def test_concurrent_writes_to_one_instance_keep_their_order(store: Store) -> None:
    written = await asyncio.gather(*(store.add_message("a", "i", Message("user", f"w{n}")) for n in range(20)))
    assert [m.id for m in written] == sorted(m.id for m in written)
    assert [m.content for m in await store.messages("a", "i")] == [f"w{n}" for n in range(20)]


async def test_a_write_completes_when_its_caller_is_cancelled(store: Store) -> None:
    task = asyncio.create_task(store.add_message("a", "i", Message("assistant", "what was heard")))
    await asyncio.sleep(0)  # the write is submitted
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 5
    while not await store.messages("a", "i") and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert [m.content for m in await store.messages("a", "i")] == ["what was heard"]


async def test_trim_keeps_the_newest_per_instance(store: Store) -> None:
    for n in range(5):
        await store.add_message("a", "one", Message("user", f"one{n}"))
    for n in range(2):
        await store.add_message("a", "two", Message("user", f"two{n}"))
    for n in range(4):
        await store.add_message("b", "one", Message("user", f"b{n}"))
    assert await store.trim(3) == 2 + 1
    assert [m.content for m in await store.messages("a", "one")] == ["one2", "one3", "one4"]
    assert [m.content for m in await store.messages("a", "two")] == ["two0", "two1"]
    assert [m.content for m in await store.messages("b", "one")] == ["b1", "b2", "b3"]
    assert await store.trim(3) == 0
    assert await store.trim(0) == 3 + 2 + 3 and await store.messages("a", "one") == []


# --- schedules -------------------------------------------------------------------------------------------------


async def test_due_times_come_from_the_store_clock(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)  # this host's clock is an hour ahead
    added = await store.add_schedule("a", "i", 1.0, "remind", {"n": 1})
    assert added.due_at == pytest.approx(real_time() + 1.0, abs=0.3)
    assert await store.claim_due("p1", lease=30) == []
    assert 0 < await store.next_due_in() <= 1.0
    await asyncio.sleep(1.1)
    (claimed,) = await store.claim_due("p1", lease=30)
    assert (claimed.id, claimed.method, claimed.payload, claimed.attempts) == (added.id, "remind", {"n": 1}, 0)


async def test_schedules_list_and_payload_round_trip(store: Store) -> None:
    payloads = [{"text": "¡Buenos días! 🌞", "ids": [1, 2]}, ["x", 1.5], "just text", 42, None]
    added = [await store.add_schedule("a", "i", 10 + n, f"m{n}", p) for n, p in enumerate(payloads)]
    other = await store.add_schedule("a", "j", 5, "elsewhere", {})
    assert [s.payload for s in await store.schedules("a", "i")] == payloads
    assert await store.schedules("a", "i") == added
    assert [s.id for s in await store.schedules()] == [other.id] + [s.id for s in added]  # earliest first
    assert 4 < await store.next_due_in() <= 5


async def test_claim_takes_the_earliest_due_up_to_limit(store: Store) -> None:
    late = await store.add_schedule("a", "i", 0.2, "late", None)
    early = await store.add_schedule("a", "i", 0, "early", None)
    future = await store.add_schedule("a", "i", 60, "future", None)
    await asyncio.sleep(0.3)
    assert [s.id for s in await store.claim_due("p", lease=30, limit=1)] == [early.id]
    assert [s.id for s in await store.claim_due("p", lease=30)] == [late.id]
    assert await store.claim_due("p", lease=30) == []
    assert future.id in {s.id for s in await store.schedules()}


async def test_each_due_schedule_is_claimed_exactly_once_by_concurrent_processes(make_store: MakeStore) -> None:
    one, two = await make_store(), await make_store()
    rng = random.Random(7)
    added = {(await one.add_schedule("a", f"i{n}", rng.uniform(0, 1), "tick", {"n": n})).id for n in range(50)}
    claims: list[tuple[str, str]] = []

    async def claimer(store: Store, owner: str) -> None:
        deadline = time.monotonic() + 15
        while len(claims) < 50 and time.monotonic() < deadline:
            for s in await store.claim_due(owner, lease=60, limit=3):
                claims.append((s.id, owner))
                await store.finish_schedule(s.id, owner)

    await asyncio.gather(claimer(one, "p1"), claimer(two, "p2"))
    counts = Counter(sid for sid, _ in claims)
    assert set(counts) == added and max(counts.values()) == 1, counts.most_common(3)
    assert await one.schedules() == [] and await two.next_due_in() is None


async def test_a_dead_claimers_schedule_is_taken_over_after_its_lease(make_store: MakeStore) -> None:
    dead, alive = await make_store(), await make_store()
    s = await alive.add_schedule("a", "i", 0, "ping", {"k": "v"})
    (held,) = await dead.claim_due("dead", lease=1.0)  # ... and it never finishes
    assert held.id == s.id
    assert await alive.claim_due("alive", lease=30) == []
    assert 0 < await alive.next_due_in() <= 1.0  # when the lease runs out
    await asyncio.sleep(1.1)
    (taken,) = await alive.claim_due("alive", lease=30)
    assert (taken.id, taken.payload) == (s.id, {"k": "v"})
    await dead.finish_schedule(s.id, "dead")  # too late: it no longer holds it
    assert [x.id for x in await alive.schedules()] == [s.id]
    await alive.finish_schedule(s.id, "alive")
    assert await alive.schedules() == []


async def test_retry_then_fail_after_the_bound(store: Store) -> None:
    s = await store.add_schedule("a", "i", 0, "flaky", None)
    (claimed,) = await store.claim_due("p", lease=30)
    await store.retry_schedule(claimed.id, "p", "boom 1", delay=0.8)
    (pending,) = await store.schedules()
    assert (pending.attempts, pending.last_error, pending.failed) == (1, "boom 1", False)
    assert await store.claim_due("p", lease=30) == []  # not before its retry delay
    await asyncio.sleep(0.9)
    (again,) = await store.claim_due("p", lease=30)
    assert again.id == s.id and again.attempts == 1
    await store.fail_schedule(again.id, "p", "boom 2")
    (failed,) = await store.schedules("a", "i")
    assert (failed.attempts, failed.last_error, failed.failed) == (2, "boom 2", True)
    await asyncio.sleep(0.1)
    assert await store.claim_due("p", lease=30) == [] and await store.next_due_in() is None
    assert await store.cancel_schedule(s.id) is False  # a failed schedule is kept
    assert [x.id for x in await store.schedules()] == [s.id]


async def test_only_the_holder_finishes_retries_or_fails(store: Store) -> None:
    s = await store.add_schedule("a", "i", 0, "m", None)
    await store.claim_due("holder", lease=30)
    await store.finish_schedule(s.id, "other")
    await store.retry_schedule(s.id, "other", "x", 0)
    await store.fail_schedule(s.id, "other", "x")
    (same,) = await store.schedules()
    assert (same.attempts, same.failed, same.last_error) == (0, False, None)


async def test_cancel(store: Store) -> None:
    keep = await store.add_schedule("a", "i", 0, "keep", None)
    drop = await store.add_schedule("a", "i", 0, "drop", None)
    assert await store.cancel_schedule(drop.id) is True
    assert await store.cancel_schedule(drop.id) is False
    assert await store.cancel_schedule("no-such-schedule") is False
    assert [s.id for s in await store.claim_due("p", lease=30)] == [keep.id]
    assert await store.next_due_in() is not None  # held, not gone
    await store.finish_schedule(keep.id, "p")
    assert await store.next_due_in() is None and await store.schedules() == []


async def test_a_retry_stored_while_the_scheduler_reads_is_not_left_to_the_next_poll(tmp_path) -> None:
    """A run fails and stores its retry while the scheduler is still reading the store: the scheduler must look
    again at once, not after its poll (here 5 s)."""
    from voice.history.schedule import Scheduler

    store = SQLiteStore(tmp_path / "voice.db")
    await store.start()
    read = store.next_due_in

    async def stale_read() -> float | None:  # the answer is computed, then arrives late (a busy database)
        due_in = await read()
        await asyncio.sleep(0.2)
        return due_in

    store.next_due_in = stale_read  # type: ignore[method-assign]
    runs: list[float] = []

    async def fire(item) -> None:
        runs.append(time.monotonic())
        if len(runs) == 1:
            raise RuntimeError("once")

    scheduler = Scheduler(store, fire, retry_delay=0.05, poll=5.0)
    await store.add_schedule("a", "i", 0.0, "m", None)
    await scheduler.start()
    try:
        deadline = time.monotonic() + 3
        while len(runs) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(runs) == 2, "the retry waited for the next poll"
        assert runs[1] - runs[0] < 1.0
    finally:
        await scheduler.stop()
        await store.close()
