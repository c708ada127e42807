"""The process-wide pool for model work: one executor, a priority queue in front of it, and the error for a
missing model."""

from __future__ import annotations

import heapq
import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["ModelNotFoundError", "PriorityScheduler", "cpu_count", "shared_executor"]


class ModelNotFoundError(FileNotFoundError):
    """A local model (or the package that ships it) is missing. The message says what to install."""


def cpu_count() -> int:
    """Cores this process may use (respects CPU affinity, e.g. in containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def shared_executor() -> ThreadPoolExecutor:
    """The process-wide pool for model work (Whisper decoding, Piper synthesis).

    One thread per core, and at least two: the models use their own native threads inside each call, so more
    Python threads would only oversubscribe the CPU; two lets a TTS sentence run while a transcription is busy
    instead of queueing behind it. Whisper additionally limits itself to its own number of slots (see
    ``voice.local.whisper``), so it can never take every thread.
    """
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=max(2, cpu_count()), thread_name_prefix="voice-local")
        return _executor


class PriorityScheduler:
    """A priority queue in front of :func:`shared_executor` running at most ``slots`` jobs at a time.

    Model calls cannot be interrupted once started, so the *order* is what keeps the important ones fast (e.g. a
    Whisper final never waits behind queued interims), and jobs cancelled while queued never run at all.
    """

    def __init__(self, slots: int) -> None:
        self._slots = slots
        self._running = 0
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def submit(self, priority: int, fn: Callable[[], Any]) -> Future:
        """Queue ``fn`` (lower ``priority`` runs first, FIFO within one). Cancel the future to unqueue it."""
        future: Future = Future()
        with self._lock:
            heapq.heappush(self._heap, [priority, next(self._seq), future, fn])
            self._pump()
        return future

    def promote(self, future: Future, priority: int) -> None:
        """Raise a queued job's priority."""
        with self._lock:
            for entry in self._heap:
                if entry[2] is future and entry[0] > priority:
                    entry[0] = priority
                    heapq.heapify(self._heap)
                    break

    def _pump(self) -> None:  # holds the lock
        while self._running < self._slots and self._heap:
            _, _, future, fn = heapq.heappop(self._heap)
            if future.set_running_or_notify_cancel():  # False: cancelled while queued
                self._running += 1
                shared_executor().submit(self._run, future, fn)

    def _run(self, future: Future, fn: Callable[[], Any]) -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - the caller gets it from the future
            future.set_exception(exc)
        finally:
            with self._lock:
                self._running -= 1
                self._pump()

