"""The process-wide pool for model work: one executor, one priority queue in front of it (shared by Whisper and
Piper, able to run compatible jobs as one batch), the thread budget, and the error for a missing model."""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

__all__ = [
    "PRIORITY_NAMES", "STT_EARLY", "STT_FINAL", "STT_INTERIM", "TTS_FIRST", "TTS_LATER",
    "BatchRunner", "ModelNotFoundError", "PriorityScheduler", "cpu_count", "model_threads", "shared_executor",
    "shared_scheduler",
]

# Priorities of model work, lower first. Speech-to-text finals end a user's turn; the first sentence of a reply is
# the next thing that user hears; early finals are speculative; a reply's later sentences have the playback of
# the earlier ones as slack; interims only refresh a live transcript.
STT_FINAL, TTS_FIRST, STT_EARLY, TTS_LATER, STT_INTERIM = 0, 1, 2, 3, 4
PRIORITY_NAMES = {STT_FINAL: "stt_final", TTS_FIRST: "tts_first", STT_EARLY: "stt_early", TTS_LATER: "tts_later",
                  STT_INTERIM: "stt_interim"}


class ModelNotFoundError(FileNotFoundError):
    """A local model (or the package that ships it) is missing. The message says what to install."""


def cpu_count() -> int:
    """Cores this process may use (respects CPU affinity, e.g. in containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def model_threads() -> int:
    """Native threads one model job uses (``$VOICE_MODEL_THREADS``, default 1); jobs run in parallel on the rest.

    On 2 cores, two one-thread jobs in parallel did more work per second than one two-thread job at a time (a
    two-thread Whisper encode costs ~10 % more CPU than a one-thread one, Piper ~20 %), and a turn's final
    never waits for a whole slow job to finish (``bench/capacity_local.py``).
    """
    return max(1, min(cpu_count(), int(os.environ.get("VOICE_MODEL_THREADS", "1"))))


_executor: ThreadPoolExecutor | None = None
_scheduler: PriorityScheduler | None = None
_shared_lock = threading.Lock()


def shared_executor() -> ThreadPoolExecutor:
    """The process-wide thread pool for model work (and model loading).

    One thread per core, and at least two; how many model jobs run at once is decided by
    :func:`shared_scheduler`, which queues in front of it.
    """
    global _executor
    with _shared_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=max(2, cpu_count()), thread_name_prefix="voice-local")
        return _executor


def shared_scheduler() -> PriorityScheduler:
    """The process-wide queue of model work (Whisper and Piper): as many jobs at once as the cores hold jobs of
    :func:`model_threads` threads, so the models never oversubscribe the CPU and the most urgent job goes next;
    later sentences and interims never take the last free slot (a turn's final or first sentence would wait for
    them to finish)."""
    global _scheduler
    with _shared_lock:
        if _scheduler is None:
            _scheduler = PriorityScheduler(max(1, cpu_count() // model_threads()), background=TTS_LATER)
        return _scheduler


class BatchRunner(Protocol):
    """Runs several queued items as one job: one result per item, in order."""

    max_batch: int

    def __call__(self, items: list[Any], /) -> list[Any]: ...


class _Job:
    __slots__ = ("batch_key", "fn", "future", "item", "priority", "runner", "seq")

    def __init__(self, priority: int, seq: int, future: Future, fn: Callable[[], Any] | None = None,
                 runner: BatchRunner | None = None, item: Any = None, batch_key: Hashable = None) -> None:
        self.priority, self.seq, self.future = priority, seq, future
        self.fn, self.runner, self.item, self.batch_key = fn, runner, item, batch_key

    def __lt__(self, other: _Job) -> bool:
        return (self.priority, self.seq) < (other.priority, other.seq)


class PriorityScheduler:
    """A priority queue in front of :func:`shared_executor` running at most ``slots`` jobs at a time.

    Model calls cannot be interrupted once started, so the *order* is what keeps the important ones fast (e.g. a
    Whisper final never waits behind queued interims), and jobs cancelled while queued never run at all.
    Batched jobs (:meth:`submit_batched`) are formed when a slot frees: the most urgent job takes along the queued
    jobs with the same runner and key, most urgent first, up to the runner's ``max_batch``. Jobs of priority
    ``background`` or lower occupy at most ``slots - 1`` slots (when there are two or more), so one is always
    free for more urgent work.
    """

    def __init__(self, slots: int, background: int | None = None) -> None:
        self.slots = slots
        self._background = background
        self._background_slots = max(1, slots - 1)
        self._running = 0
        self._running_background = 0
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        # seconds of jobs run, by the priority of their most urgent item
        self._busy: defaultdict[int, float] = defaultdict(float)
        self._items: Counter[int] = Counter()  # items run, by their own priority
        self._sizes: Counter[int] = Counter()  # jobs run, by their number of items

    def stats(self) -> dict[str, dict[str, float]]:
        """What has run so far (for benchmarks and monitoring): seconds busy and items run per priority (by name
        when it has one), and how many jobs had each batch size."""
        name = PRIORITY_NAMES.get
        with self._lock:
            return {
                "busy_seconds": {str(name(p, p)): round(s, 3) for p, s in sorted(self._busy.items())},
                "items": {str(name(p, p)): n for p, n in sorted(self._items.items())},
                "batch_sizes": {str(size): n for size, n in sorted(self._sizes.items())},
            }

    @property
    def queued(self) -> int:
        """Jobs waiting (including cancelled ones not yet discarded)."""
        return len(self._heap)

    def submit(self, priority: int, fn: Callable[[], Any]) -> Future:
        """Queue ``fn`` (lower ``priority`` runs first, FIFO within one). Cancel the future to unqueue it."""
        return self._push(_Job(priority, 0, Future(), fn=fn))

    def submit_batched(self, priority: int, runner: BatchRunner, item: Any, batch_key: Hashable = None) -> Future:
        """Queue ``item`` for ``runner``, which may run it together with other queued items of the same
        ``batch_key``. The future gets this item's result."""
        return self._push(_Job(priority, 0, Future(), runner=runner, item=item, batch_key=batch_key))

    def promote(self, future: Future, priority: int) -> None:
        """Raise a queued job's priority."""
        with self._lock:
            for job in self._heap:
                if job.future is future and job.priority > priority:
                    job.priority = priority
                    heapq.heapify(self._heap)
                    break

    def _push(self, job: _Job) -> Future:
        with self._lock:
            job.seq = next(self._seq)
            heapq.heappush(self._heap, job)
            self._pump()
        return job.future

    def _is_background(self, job: _Job) -> bool:
        return self._background is not None and job.priority >= self._background

    def _pump(self) -> None:  # holds the lock
        while self._running < self.slots and self._heap:
            if self._is_background(self._heap[0]) and self._running_background >= self._background_slots:
                return  # everything queued is background (the heap's top is the most urgent)
            job = heapq.heappop(self._heap)
            if not job.future.set_running_or_notify_cancel():  # cancelled while queued
                continue
            batch = [job] if job.runner is None else self._take_batch(job)
            self._running += 1
            self._running_background += self._is_background(job)
            shared_executor().submit(self._run, batch)

    def _take_batch(self, lead: _Job) -> list[_Job]:  # holds the lock
        assert lead.runner is not None
        batch = [lead]
        mates = sorted(j for j in self._heap if j.runner is lead.runner and j.batch_key == lead.batch_key)
        for job in mates:
            if len(batch) >= lead.runner.max_batch:
                break
            self._heap.remove(job)
            if job.future.set_running_or_notify_cancel():
                batch.append(job)
        if len(batch) > 1 or len(mates) > 0:
            heapq.heapify(self._heap)
        return batch

    def _run(self, batch: list[_Job]) -> None:
        lead, started = batch[0], time.perf_counter()
        try:
            if lead.runner is None:
                results = [lead.fn()]  # type: ignore[misc]
            else:
                results = lead.runner([job.item for job in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{lead.runner!r} returned {len(results)} results for {len(batch)} items")
            for job, result in zip(batch, results, strict=True):
                job.future.set_result(result)
        except BaseException as exc:  # noqa: BLE001 - the callers get it from their futures
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
        finally:
            with self._lock:
                self._busy[lead.priority] += time.perf_counter() - started
                self._items.update(job.priority for job in batch)
                self._sizes[len(batch)] += 1
                self._running -= 1
                self._running_background -= self._is_background(lead)
                self._pump()
