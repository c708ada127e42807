"""Small asyncio helpers every layer uses: awaiting hooks that may be sync or async, and a set of background tasks
that are cancelled together."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("voice")


async def maybe_await(value: Any) -> Any:
    """The value itself, or what it resolves to if it is awaitable (hooks may be sync or async)."""
    return await value if inspect.isawaitable(value) else value


class TaskSet:
    """Background tasks owned by one object: started with :meth:`spawn`, cancelled together by :meth:`cancel_all`.
    A task that fails is logged, never silently lost."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        """Run ``coro`` in the background; the task is forgotten when it ends."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s of %s failed", task.get_name(), self.name, exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_all(self) -> None:
        """Cancel every task (except the caller's own) and wait for them to end."""
        current = asyncio.current_task()
        others = [t for t in self._tasks if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
