"""One thread that runs blocking calls in the order they were submitted and hands their results back to the event
loop in batches: everything that queued up while it worked is answered with one wake-up of the loop, instead of a
``concurrent.futures.Future`` and a loop wake-up per call (``run_in_executor``).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Item = tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]
_Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


class SerialWorker:
    """Runs ``fn(*args)`` calls one at a time, in submission order, on its own thread (started on first use).

    A caller that stops waiting (cancelled) does not stop its call: what was submitted runs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue a call; the future resolves on the calling loop with its result or exception."""
        if self._stopped:
            raise RuntimeError(f"{self.name} is stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()
        self._queue.put((loop, future, fn, args))
        return future

    def stop(self) -> None:
        """Finish what is queued, then end the thread (waits for it)."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopped

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            batch: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
            while item is not None:
                loop, future, fn, args = item
                try:
                    outcome: _Outcome = (future, fn(*args), None)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    outcome = (future, None, exc)
                batch.setdefault(loop, []).append(outcome)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            for loop, outcomes in batch.items():
                with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                    loop.call_soon_threadsafe(_settle, outcomes)
            if item is None:
                return


def _settle(outcomes: list[_Outcome]) -> None:
    for future, result, exc in outcomes:
        if future.cancelled():
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
