"""Durable schedules: ``agent.schedule(delay, "method", payload)`` is stored, and fired by whichever process claims it
when it comes due — after a restart too (late items fire at start-up).

The :class:`Scheduler` knows nothing of agents: it claims due schedules from the store (with a lease, so one that a
dead process had claimed is taken over once the lease runs out) and hands each to a ``fire`` callback. A callback that
raises is retried with a growing delay, up to ``max_attempts`` runs; then the schedule is kept, marked failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .._aio import TaskSet
from .store import Schedule, Store

log = logging.getLogger("voice.schedule")

Fire = Callable[[Schedule], Awaitable[None]]


class Scheduler:
    """Fires due schedules of one store. ``poll``: how often to look for schedules other processes added."""

    def __init__(
        self,
        store: Store,
        fire: Fire,
        *,
        lease: float = 60.0,
        max_attempts: int = 3,
        retry_delay: float = 5.0,
        poll: float = 1.0,
    ) -> None:
        self.store = store
        self.fire = fire
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease = lease
        self.max_attempts = max(1, max_attempts)
        self.retry_delay = retry_delay
        self.poll = poll
        self._wake = asyncio.Event()
        self._runs = TaskSet("scheduler")
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin firing (what came due while no process was running fires now)."""
        if self._loop is None:
            self._loop = asyncio.create_task(self._run_loop(), name="voice-scheduler")

    async def stop(self) -> None:
        """Stop firing; schedules running now are cancelled (their claim runs out and another process retries)."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None
        await self._runs.cancel_all()

    async def add(self, agent: str, instance: str, delay: float, method: str, payload: Any) -> str:
        """Store a schedule; returns its id."""
        item = await self.store.add_schedule(agent, instance, delay, method, payload)
        self.wake()
        return item.id

    async def cancel(self, schedule_id: str) -> bool:
        """Delete a schedule that has not run yet."""
        return await self.store.cancel_schedule(schedule_id)

    def wake(self) -> None:
        """Look at the store again now (a schedule was added here or, by a notice, elsewhere)."""
        self._wake.set()

    async def _run_loop(self) -> None:
        while True:
            # cleared before the store is read, not after: a wake() while we read (a retry just stored by one of
            # our runs) then ends the wait at once instead of being lost until the next poll
            self._wake.clear()
            try:
                due_in = await self.store.next_due_in()
                if due_in is not None and due_in <= 0:
                    for item in await self.store.claim_due(self.owner, self.lease):
                        self._runs.spawn(self._run(item), name=f"schedule-{item.id[:8]}")
                    due_in = await self.store.next_due_in()
                wait = self.poll if due_in is None else min(self.poll, max(0.005, due_in))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler: the store failed; retrying")
                wait = self.poll
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _run(self, item: Schedule) -> None:
        try:
            await self.fire(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            attempt = item.attempts + 1
            if attempt >= self.max_attempts:
                log.exception("schedule %s (%s.%s) failed %d times; kept as failed", item.id, item.agent,
                              item.method, attempt)
                await self.store.fail_schedule(item.id, self.owner, error)
            else:
                delay = self.retry_delay * 2 ** (attempt - 1)
                log.warning("schedule %s (%s.%s) failed (%s); retrying in %.0f s", item.id, item.agent, item.method,
                            error, delay)
                await self.store.retry_schedule(item.id, self.owner, error, delay)
            self.wake()
            return
        await self.store.finish_schedule(item.id, self.owner)
