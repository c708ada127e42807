"""The single writer of an instance's history, on the real SQLite store: order, failures and cancelled callers."""

from __future__ import annotations

import asyncio
import logging

import pytest

from voice.history.sqlite import SQLiteStore
from voice.history.store import Message
from voice.history.transcript import Transcript

pytestmark = pytest.mark.asyncio


class Failing(SQLiteStore):
    """Refuses messages containing "poison"; stores the rest."""

    async def add_message(self, agent: str, instance: str, message: Message) -> Message:
        if "poison" in message.content:
            await asyncio.sleep(0.01)
            raise RuntimeError("disk said no")
        return await super().add_message(agent, instance, message)


@pytest.fixture
async def store(tmp_path):
    s = Failing(tmp_path / "t.db")
    await s.start()
    yield s
    await s.close()


async def test_writes_are_stored_in_the_order_they_were_made_and_recent_gets_their_ids(store):
    t = await Transcript.load(store, "a", "i", keep=50)
    futures = [t.add("user" if k % 2 else "assistant", f"message {k}") for k in range(30)]
    stored = await asyncio.gather(*futures)
    assert [m.content for m in stored] == [f"message {k}" for k in range(30)]
    ids = [m.id for m in stored]
    assert ids == sorted(ids) and None not in ids
    assert [m.id for m in t.recent(30)] == ids
    assert [m.content for m in await store.messages("a", "i")] == [f"message {k}" for k in range(30)]


async def test_a_failed_write_reaches_its_caller_once_logged_and_the_later_ones_are_still_stored(store, caplog):
    caplog.set_level(logging.ERROR, logger="voice.history")
    t = await Transcript.load(store, "a", "i", keep=50)
    first, bad, after = t.add("user", "before"), t.add("assistant", "poison pill"), t.add("user", "after")
    await t.flush()
    assert (await first).content == "before" and (await after).content == "after"
    with pytest.raises(RuntimeError, match="disk said no"):
        await bad
    assert [m.content for m in await store.messages("a", "i")] == ["before", "after"]
    assert sum("could not store" in r.getMessage() for r in caplog.records) == 1


async def test_a_caller_cancelled_while_waiting_does_not_lose_its_message(store):
    t = await Transcript.load(store, "a", "i", keep=50)

    async def say(text: str) -> None:
        await t.add("user", text)

    callers = [asyncio.create_task(say(f"said {k}")) for k in range(5)]
    await asyncio.sleep(0)
    for task in callers:
        task.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    await t.flush()
    assert [m.content for m in await store.messages("a", "i")] == [f"said {k}" for k in range(5)]


async def test_flush_waits_for_every_write_even_when_the_flusher_is_cancelled(store):
    t = await Transcript.load(store, "a", "i", keep=50)
    for k in range(20):
        t.add("user", f"m{k}")
    flusher = asyncio.create_task(t.flush())
    await asyncio.sleep(0)
    flusher.cancel()
    await asyncio.gather(flusher, return_exceptions=True)
    await t.flush()
    assert len(await store.messages("a", "i")) == 20
