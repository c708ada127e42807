"""One agent instance's conversation: the **only** writer of its history.

Everything an instance says or hears is appended here: the user's turns, the agent's replies (only what the user
heard, marked ``interrupted``, when a reply was cut short), fixed text spoken with ``speak``, and what the agent stores
itself (``add_message``, e.g. tool calls). Recent messages stay in memory for ``ctx.messages``; writes go to the store
in the order they were made by one writer per instance, each queued before :meth:`Transcript.add` returns, so a
cancelled caller never loses one. With a store that other processes share, :meth:`Transcript.refresh` brings in what
they wrote.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from .store import Message, Store

log = logging.getLogger("voice.history")


class Transcript:
    """The history of one (agent, instance). ``keep``: how many recent messages stay in memory."""

    def __init__(self, store: Store, agent: str, instance: str, recent: list[Message], keep: int) -> None:
        self.store = store
        self.agent = agent
        self.instance = instance
        self.keep = max(1, keep)
        self._recent = list(recent[-self.keep :])
        #: the newest id read from the store: whatever others stored up to it is in memory (own writes do not move
        #: it, so a message another process stored just before one of ours is still brought in by refresh())
        self._synced_id = max((m.id or 0 for m in recent), default=0)
        self._pending: deque[tuple[Message, asyncio.Future[Message]]] = deque()  # added, not yet stored, in order
        self._writer: asyncio.Task[None] | None = None  # stores what is pending, one message after another

    @classmethod
    async def load(cls, store: Store, agent: str, instance: str, keep: int) -> Transcript:
        """The transcript of an instance, with its ``keep`` most recent messages read from the store."""
        return cls(store, agent, instance, await store.messages(agent, instance, keep), keep)

    def recent(self, limit: int) -> list[Message]:
        """The last ``limit`` messages, oldest first (what ``ctx.messages`` is built from)."""
        return self._recent[-limit:] if limit > 0 else []

    def add(
        self, role: str, content: str, *, interrupted: bool = False, meta: dict[str, Any] | None = None
    ) -> asyncio.Future[Message]:
        """Append a message: in memory at once, in the store in order. Await the result to know it is stored."""
        message = Message(role, content, interrupted, time.time(), meta=meta)
        self._recent.append(message)
        del self._recent[: -self.keep]
        stored: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending.append((message, stored))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_pending())
        return stored

    def user_turn(self, text: str) -> asyncio.Future[Message]:
        """What the user said (or typed)."""
        return self.add("user", text)

    def reply(self, heard: str, *, interrupted: bool, meta: dict[str, Any] | None = None) -> asyncio.Future[Message]:
        """What the user heard of a reply; nothing is stored when that is nothing."""
        text = heard.strip()
        if not text:
            done: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
            done.set_result(Message("assistant", "", interrupted))
            return done
        return self.add("assistant", text, interrupted=interrupted, meta=meta)

    async def _write_pending(self) -> None:
        """In order; a failed write is logged and handed to its caller, and the ones after it still go ahead. Each
        result is delivered even if its caller stopped waiting (a cancelled future is skipped)."""
        pending = self._pending
        while pending:
            message, stored = pending[0]
            try:
                result = await self.store.add_message(self.agent, self.instance, message)
            except asyncio.CancelledError:  # the writer itself (the loop is ending): that write was handed over
                pending.popleft()
                stored.cancel()
                raise
            except Exception as exc:
                pending.popleft()
                log.exception("could not store a %s message of %s/%s", message.role, self.agent, self.instance)
                if not stored.cancelled():
                    stored.set_exception(exc)
                    stored.exception()  # logged here: not again as "never retrieved" if nobody awaits it
                continue
            pending.popleft()
            self._replace(message, result)
            if not stored.cancelled():
                stored.set_result(result)

    def _replace(self, pending: Message, stored: Message) -> None:
        for i in range(len(self._recent) - 1, -1, -1):
            if self._recent[i] is pending:
                self._recent[i] = stored
                return

    async def flush(self) -> None:
        """Wait until every message added so far is in the store."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait({self._writer})  # a caller cancelled here does not cancel the writes

    async def refresh(self) -> None:
        """Bring in messages that other processes stored for this instance since we last looked (one query)."""
        await self.flush()
        newer = await self.store.messages(self.agent, self.instance, self.keep, after_id=self._synced_id)
        if not newer:
            return
        self._synced_id = max(self._synced_id, max(m.id or 0 for m in newer))
        known = {m.id for m in self._recent if m.id is not None}
        pending = [m for m in self._recent if m.id is None]  # added while we read: some may be in ``newer``
        fresh = [m for m in newer if m.id not in known and not any(_same(m, p) for p in pending)]
        if not fresh:
            return
        merged = sorted([m for m in self._recent if m.id is not None] + fresh, key=lambda m: m.id or 0)
        self._recent = (merged + pending)[-self.keep :]


def _same(stored: Message, pending: Message) -> bool:
    """Whether ``stored`` is the write of ``pending`` (same text, same creation time to the store's precision)."""
    return (stored.role, stored.content, stored.interrupted) == (pending.role, pending.content, pending.interrupted) \
        and abs(stored.created_at - pending.created_at) < 1e-3
