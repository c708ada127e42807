"""The shared model queue's logic, with stand-in jobs (the real models: ``tests/test_whisper_batching.py``):
priorities, batches, cancelling and promoting, and a Whisper final answering its call's queued interims."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import CancelledError, Future, wait

import pytest

from voice.local._pool import STT_EARLY, STT_FINAL, STT_INTERIM, TTS_FIRST, TTS_LATER, PriorityScheduler
from voice.local.whisper_batch import WhisperQueue
from voice.local.whisper_model import Decoded, Request


class Blocker:
    """Occupies ``n`` slots of a scheduler until released."""

    def __init__(self, scheduler: PriorityScheduler, n: int = 1) -> None:
        self.gate = threading.Event()
        started = [threading.Event() for _ in range(n)]
        self.futures = [scheduler.submit(-1, lambda s=s: (s.set(), self.gate.wait(10))) for s in started]
        assert all(s.wait(5) for s in started)

    def release(self) -> None:
        self.gate.set()


class Recorder:
    """A batch runner that records what it ran, in order."""

    def __init__(self, max_batch: int, fail_on: object = None) -> None:
        self.max_batch, self.fail_on = max_batch, fail_on
        self.batches: list[list[object]] = []
        self._lock = threading.Lock()

    def __call__(self, items: list[object]) -> list[object]:
        with self._lock:
            self.batches.append(list(items))
        if self.fail_on in items:
            raise RuntimeError("model failed")
        return [f"done {item}" for item in items]


def test_jobs_run_in_priority_order_and_fifo_within_one():
    scheduler = PriorityScheduler(1)
    order: list[str] = []
    blocker = Blocker(scheduler)
    jobs = [("interim 1", STT_INTERIM), ("later sentence", TTS_LATER), ("early", STT_EARLY), ("interim 2", STT_INTERIM),
            ("first sentence", TTS_FIRST), ("final", STT_FINAL)]
    futures = [scheduler.submit(p, lambda name=name: order.append(name)) for name, p in jobs]
    blocker.release()
    wait(futures, timeout=5)
    assert order == ["final", "first sentence", "early", "later sentence", "interim 1", "interim 2"]


def test_a_promoted_job_overtakes_and_a_cancelled_one_never_runs():
    scheduler = PriorityScheduler(1)
    order: list[str] = []
    blocker = Blocker(scheduler)
    interim = scheduler.submit(STT_INTERIM, lambda: order.append("interim"))
    early = scheduler.submit(STT_EARLY, lambda: order.append("early"))
    dropped = scheduler.submit(STT_EARLY, lambda: order.append("dropped"))
    late = scheduler.submit(TTS_FIRST, lambda: order.append("tts"))
    scheduler.promote(early, STT_FINAL)
    assert dropped.cancel()
    blocker.release()
    wait([interim, early, late], timeout=5)
    assert order == ["early", "tts", "interim"]
    assert dropped.cancelled()


def test_batches_take_the_most_urgent_jobs_of_the_same_key():
    scheduler = PriorityScheduler(1)
    runner = Recorder(max_batch=3)
    blocker = Blocker(scheduler)
    a = [scheduler.submit_batched(p, runner, f"a{i}", "A") for i, p in enumerate([4, 4, 2, 4, 0])]
    b = scheduler.submit_batched(1, runner, "b0", "B")
    cancelled = scheduler.submit_batched(0, runner, "a-cancelled", "A")
    cancelled.cancel()
    blocker.release()
    wait([*a, b], timeout=5)
    # a4 (priority 0) leads and takes the most urgent of its key along; B waits for the next slot
    assert runner.batches == [["a4", "a2", "a0"], ["b0"], ["a1", "a3"]]
    assert [f.result() for f in a] == [f"done a{i}" for i in range(5)]


def test_a_failing_batch_fails_each_of_its_jobs_and_the_queue_goes_on():
    scheduler = PriorityScheduler(1)
    runner = Recorder(max_batch=2, fail_on="bad")
    blocker = Blocker(scheduler)
    failing = [scheduler.submit_batched(0, runner, item, "k") for item in ("bad", "good")]
    after = scheduler.submit_batched(1, runner, "next", "k")
    blocker.release()
    wait([*failing, after], timeout=5)
    assert all(isinstance(f.exception(), RuntimeError) for f in failing)
    assert after.result() == "done next"


# --- Whisper's queue: batches per window, finals answering interims ------------------------------------------


class FakeWhisper:
    """Stands in for the model's batch decode: records every request it decodes."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.decoded: list[Request] = []
        self.batches: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, requests: list[Request]) -> list[Decoded | None]:
        time.sleep(self.delay)
        with self._lock:
            self.decoded += requests
            self.batches.append(len(requests))
        return [None if r.stale is not None and r.stale.is_set() else Decoded(f"{len(r.pcm)} bytes") for r in requests]


def speech(seconds: float) -> bytes:
    return bytes(int(seconds * 32_000))


def test_a_final_answers_its_calls_queued_interims_and_only_those():
    scheduler = PriorityScheduler(1)
    model = FakeWhisper()
    queue = WhisperQueue(model, max_batch=4, scheduler=scheduler)
    blocker = Blocker(scheduler)
    mine = queue.submit(STT_INTERIM, Request(speech(1), "en", window_s=5.0), owner="call A")
    other = queue.submit(STT_INTERIM, Request(speech(1), "en", window_s=5.0), owner="call B")
    final = queue.submit(STT_EARLY, Request(speech(2), "en"), owner="call A")
    blocker.release()
    wait([mine, other, final], timeout=5)
    assert final.result() == Decoded(f"{len(speech(2))} bytes")
    assert mine.result() is final.result()  # the final's transcription, not a second decode
    assert other.result() == Decoded(f"{len(speech(1))} bytes")
    assert sorted(len(r.pcm) for r in model.decoded) == [len(speech(1)), len(speech(2))]


def test_a_folded_interim_is_cancelled_with_its_final_and_a_running_one_skips_its_decode():
    scheduler = PriorityScheduler(1)
    model = FakeWhisper()
    queue = WhisperQueue(model, max_batch=4, scheduler=scheduler)
    blocker = Blocker(scheduler)
    interim = queue.submit(STT_INTERIM, Request(speech(1), "en", window_s=5.0), owner="A")
    early = queue.submit(STT_EARLY, Request(speech(2), "en"), owner="A")
    assert early.cancel()  # speech resumed: the early final is dropped...
    with pytest.raises(CancelledError):
        interim.result(timeout=5)  # ...and so is the interim it was answering (the session sends the next one)
    blocker.release()

    gate, started = threading.Event(), threading.Event()

    def slow(requests: list[Request]) -> list[Decoded | None]:
        started.set()
        gate.wait(5)
        return model(requests)

    queue = WhisperQueue(slow, max_batch=4, scheduler=scheduler)
    stale = threading.Event()
    running = queue.submit(STT_INTERIM, Request(speech(1), "en", window_s=5.0, stale=stale), owner="A")
    assert started.wait(5)
    final = queue.submit(STT_FINAL, Request(speech(2), "en"), owner="A")
    assert stale.is_set()  # the running interim will not decode
    gate.set()
    assert running.result(timeout=5) is None
    assert final.result(timeout=5) == Decoded(f"{len(speech(2))} bytes")


def test_finals_batch_together_interims_apart_and_windows_apart():
    scheduler = PriorityScheduler(1)
    model = FakeWhisper()
    queue = WhisperQueue(model, max_batch=4, scheduler=scheduler)
    blocker = Blocker(scheduler)
    jobs = [queue.submit(STT_EARLY, Request(speech(2 + i * 0.5), "en"), owner=i) for i in range(3)]  # 10 s windows
    jobs.append(queue.submit(STT_FINAL, Request(speech(9), "en"), owner=3))  # a 15 s window
    jobs += [queue.submit(STT_INTERIM, Request(speech(1), "en", window_s=5.0), owner=10 + i) for i in range(2)]
    blocker.release()
    wait(jobs, timeout=5)
    assert model.batches == [1, 3, 2]  # the 15 s final alone, first; the three 10 s early finals; the interims


def test_no_job_is_lost_or_run_twice_when_cancelled_and_promoted_concurrently():
    scheduler = PriorityScheduler(2)
    model = FakeWhisper(delay=0.002)
    queue = WhisperQueue(model, max_batch=4, scheduler=scheduler)
    submitted: list[tuple[Future, Request, object, bool]] = []
    lock = threading.Lock()

    def caller(seed: int) -> None:
        rng = random.Random(seed)
        for step in range(60):
            owner = (seed, step // 6)  # a call's turn: interims, then a final
            final = step % 6 == 5
            request = Request(speech(rng.choice([1, 2, 3, 9])), "en", window_s=None if final else 5.0,
                              stale=threading.Event())
            future = queue.submit(STT_EARLY if final else STT_INTERIM, request, owner=owner)
            with lock:
                submitted.append((future, request, owner, final))
            roll = rng.random()
            if roll < 0.2:
                future.cancel()
                request.stale.set()
            elif roll < 0.4:
                queue.promote(future, STT_FINAL)
            time.sleep(rng.random() * 0.002)

    threads = [threading.Thread(target=caller, args=(seed,)) for seed in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _, not_done = wait([f for f, *_ in submitted], timeout=10)
    assert not not_done  # nothing lost: every job was answered or cancelled
    ids = [id(r) for r in model.decoded]
    assert len(ids) == len(set(ids))  # nothing decoded twice
    finals = {owner: f for f, _, owner, final in submitted if final}
    for future, request, owner, final in submitted:
        if future.cancelled():
            continue
        result = future.result()
        if result is None:  # went stale (cancelled while running, or its call's final came)
            continue
        own = Decoded(f"{len(request.pcm)} bytes")
        answered_by_final = (not final and owner in finals and not finals[owner].cancelled()
                             and result is finals[owner].result())
        assert result == own or answered_by_final
    assert not queue._pending and not queue._interims  # no bookkeeping left behind


def test_later_sentences_and_interims_leave_a_slot_free_for_a_final():
    scheduler = PriorityScheduler(2, background=TTS_LATER)
    gate = threading.Event()
    running: list[str] = []

    def job(name: str):
        def run() -> None:
            running.append(name)
            gate.wait(5)
        return run

    background = [scheduler.submit(p, job(f"bg{i}")) for i, p in enumerate([TTS_LATER, STT_INTERIM, STT_INTERIM])]
    time.sleep(0.1)
    assert running == ["bg0"]  # one slot stays free...
    final = scheduler.submit(STT_FINAL, lambda: "final")
    assert final.result(timeout=2) == "final"  # ...so a final runs at once
    gate.set()
    wait(background, timeout=5)
    assert sorted(running) == ["bg0", "bg1", "bg2"]
