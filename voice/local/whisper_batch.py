"""Whisper's jobs on the shared model queue: transcriptions of several calls run as one batch, and a call's
queued interim is answered by its final instead of being decoded too.

Batching: when a slot frees, the most urgent Whisper job takes along the queued jobs of the same kind (final or
interim) and encoder window, up to ``max_batch`` (see :meth:`voice.local.whisper_model._Runtime.transcribe_batch`).
Under light load nothing waits to be batched; under heavy load the queue fills and the batches grow, and a batch
of B costs less than B single decodes (mostly in the decoder, whose per-token steps are latency-bound).

Folding: when a call submits a final (or early final), its interims still queued would transcribe a prefix of the
same audio more coarsely; they get the final's result instead, and one already running skips its decode.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, InvalidStateError

from ._pool import PriorityScheduler, shared_scheduler
from .whisper_request import RATE, Decoded, Request, window_seconds

__all__ = ["WhisperQueue"]


class _Pending:
    """One submitted job: the caller's future and the scheduler job currently answering it."""

    __slots__ = ("outer", "own", "request", "source")

    def __init__(self, request: Request, outer: Future, own: Future) -> None:
        self.request, self.outer = request, outer
        self.own = own  # the scheduler job submitted for this request
        self.source = own  # the one whose result it gets (a final's, once folded)


class WhisperQueue:
    """Submits Whisper requests to the shared :class:`PriorityScheduler` as batchable jobs.

    ``transcribe_batch``: the model's batch decode. ``max_batch``: the largest batch. The scheduler defaults to
    :func:`shared_scheduler` (shared with Piper).
    """

    def __init__(
        self,
        transcribe_batch: Callable[[list[Request]], list[Decoded | None]],
        max_batch: int,
        scheduler: PriorityScheduler | None = None,
    ) -> None:
        self._transcribe_batch = transcribe_batch
        self.max_batch = max_batch
        self._scheduler = scheduler or shared_scheduler()
        self._lock = threading.RLock()  # re-entered when a cancel runs a done-callback in this thread
        self._pending: dict[Future, _Pending] = {}
        self._interims: dict[Hashable, list[_Pending]] = {}
        self.folded = 0  # interims answered by their call's final instead of being decoded
        self.skipped = 0  # interims already running when their call's final came: decode skipped

    def __call__(self, requests: list[Request]) -> list[Decoded | None]:
        """Run a batch (called by the scheduler in a worker thread)."""
        return self._transcribe_batch(requests)

    def submit(self, priority: int, request: Request, owner: Hashable = None) -> Future:
        """Queue ``request``; the future gets its :class:`Decoded` (None if it went stale). Cancel the future to
        drop the job (it is unqueued if it has not started). ``owner`` (e.g. the session) lets a final answer
        that owner's queued interims."""
        kind = "interim" if request.window_s is not None else "final"
        window = window_seconds(len(request.pcm) / 2 / RATE, request.window_s)
        key = (kind, request.language, request.beam_size, window)
        own = self._scheduler.submit_batched(priority, self, request, key)
        outer: Future = Future()
        pending = _Pending(request, outer, own)
        with self._lock:
            self._pending[outer] = pending
            if owner is not None:
                if kind == "interim":
                    self._interims.setdefault(owner, []).append(pending)
                else:
                    self._fold(self._interims.pop(owner, []), pending)
        own.add_done_callback(lambda job: self._answer(pending, job))
        outer.add_done_callback(lambda _: self._forget(pending, owner))
        return outer

    def promote(self, future: Future, priority: int) -> None:
        """Raise the priority of a queued job (e.g. an early final once the turn has ended)."""
        with self._lock:
            pending = self._pending.get(future)
        if pending is not None:
            self._scheduler.promote(pending.source, priority)

    def _fold(self, interims: list[_Pending], final: _Pending) -> None:  # holds the lock
        for interim in interims:
            if interim.outer.done():
                continue
            interim.source = final.own
            if interim.own.cancel():  # was queued: never runs; the final answers it
                self.folded += 1
                final.own.add_done_callback(functools.partial(self._answer, interim))
            else:  # running (or just finished): it keeps its own result, but need not decode
                interim.source = interim.own
                if interim.request.stale is not None:
                    self.skipped += 1
                    interim.request.stale.set()

    def _answer(self, pending: _Pending, job: Future) -> None:
        """``job`` is done: pass its outcome on, if it is the one answering ``pending``."""
        with self._lock:
            if pending.source is not job:
                return  # folded: the final's job answers instead
        try:
            if job.cancelled():
                pending.outer.cancel()
            elif job.exception() is not None:
                pending.outer.set_exception(job.exception())
            else:
                pending.outer.set_result(job.result())
        except InvalidStateError:  # the caller cancelled it meanwhile
            pass

    def _forget(self, pending: _Pending, owner: Hashable) -> None:
        """The caller's future is done (answered or cancelled): drop the bookkeeping, unqueue a cancelled job."""
        with self._lock:
            self._pending.pop(pending.outer, None)
            interims = self._interims.get(owner)
            if interims is not None and pending in interims:
                interims.remove(pending)
                if not interims:
                    del self._interims[owner]
        if pending.outer.cancelled():
            pending.outer.set_running_or_notify_cancel()  # wakes concurrent.futures.wait() on it
            pending.own.cancel()  # only its own job: a final answering a folded interim goes on
