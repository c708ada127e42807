"""Durable schedules: ``agent.schedule(delay, "method", payload)`` is stored in SQLite and armed on the event loop,
so it fires after a server restart too (late items fire at start-up)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from .agent import maybe_await
from .storage import Schedule

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("voice.schedule")


class Scheduler:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._running: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Arm everything stored, including items that came due while the server was down."""
        for item in await self.runtime.store.schedules():
            self._arm(item)

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def add(self, agent: str, instance: str, delay: float, method: str, payload: Any) -> str:
        item = await self.runtime.store.add_schedule(agent, instance, time.time() + max(0.0, delay), method, payload)
        self._arm(item)
        return item.id

    async def cancel(self, schedule_id: str) -> bool:
        timer = self._timers.pop(schedule_id, None)
        if timer:
            timer.cancel()
        return await self.runtime.store.remove_schedule(schedule_id)

    def _arm(self, item: Schedule) -> None:
        loop = asyncio.get_running_loop()
        delay = max(0.0, item.due_at - time.time())
        self._timers[item.id] = loop.call_later(delay, self._fire, item)

    def _fire(self, item: Schedule) -> None:
        self._timers.pop(item.id, None)
        task = asyncio.create_task(self._run(item))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, item: Schedule) -> None:
        agent = await self.runtime.acquire(item.agent, item.instance)
        try:
            if agent is None:
                log.warning("schedule %s: agent %r no longer exists; dropped", item.id, item.agent)
            else:
                await maybe_await(getattr(agent, item.method)(item.payload))
        except Exception:  # noqa: BLE001 - a failing reminder must not take the server down
            log.exception("schedule %s (%s.%s) failed", item.id, item.agent, item.method)
        finally:
            if agent is not None:
                self.runtime.release(agent)
            await self.runtime.store.remove_schedule(item.id)
