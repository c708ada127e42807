"""Batching and priorities with the real models (Whisper tiny.en, Piper): a batch transcribes exactly like single
decodes, a final overtakes queued work, calls decoded together keep their own words, and a reply's first sentence
is synthesized before other replies' later ones. Run with ``HF_HUB_OFFLINE=1``."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import wait

import pytest

try:
    from tests.speech import Recorder, feed, piper_speech, silence, wer
    from tests.test_model_queue import Blocker
except ImportError:  # run from inside tests/
    from speech import Recorder, feed, piper_speech, silence, wer
    from test_model_queue import Blocker

from voice.local import PiperTTS, WhisperTranscriber
from voice.local._pool import STT_EARLY, STT_FINAL, STT_INTERIM, PriorityScheduler, shared_scheduler
from voice.local.whisper_batch import WhisperQueue
from voice.local.whisper_model import Request
from voice.providers.base import TranscriberOptions

SENTENCES = [
    "What time does the pharmacy close on Sunday evening?",
    "Please remind me to call my sister after lunch.",
    "How far is the nearest train station from here?",
    "Turn off the lights in the kitchen.",
    "Can you recommend a good book?",
]


@pytest.fixture(scope="module")
def stt() -> WhisperTranscriber:
    transcriber = WhisperTranscriber()
    asyncio.run(transcriber.warm_up())
    return transcriber


def clip(text: str) -> bytes:
    return silence(300) + piper_speech(text) + silence(100)


def test_a_batch_transcribes_exactly_like_single_decodes(stt):
    runtime = stt._runtime
    single = [runtime.transcribe_batch([Request(clip(s), "en")])[0] for s in SENTENCES]
    stale = threading.Event()
    stale.set()
    requests = [Request(clip(s), "en") for s in SENTENCES]
    batch = runtime.transcribe_batch([*requests[:2], Request(clip(SENTENCES[0]), "en", stale=stale), *requests[2:]])
    assert batch[2] is None  # the stale one is skipped, the others are untouched
    batch = batch[:2] + batch[3:]
    assert [d.text for d in batch] == [d.text for d in single]
    assert wer(SENTENCES, [d.text for d in batch]) == wer(SENTENCES, [d.text for d in single]) <= 0.1
    for b, s in zip(batch, single, strict=True):
        assert b.no_speech_prob == pytest.approx(s.no_speech_prob, abs=1e-3)
        assert b.avg_logprob == pytest.approx(s.avg_logprob, abs=1e-3)


def test_a_final_submitted_behind_queued_interims_and_early_finals_finishes_first(stt):
    scheduler = PriorityScheduler(1)
    queue = WhisperQueue(stt._runtime.transcribe_batch, max_batch=4, scheduler=scheduler)
    done_at: dict[str, float] = {}

    def submit(name: str, priority: int, request: Request, owner: str):
        job = queue.submit(priority, request, owner=owner)
        job.add_done_callback(lambda _: done_at.setdefault(name, time.monotonic()))
        return job

    long_text = "Could you please tell me how to get from the central station to the old museum near the river?"
    jobs = {"busy": submit("busy", STT_EARLY, Request(clip(long_text), "en"), "call 0")}  # takes the only slot
    for i, text in enumerate(SENTENCES[1:4], start=1):
        jobs[f"interim {i}"] = submit(f"interim {i}", STT_INTERIM, Request(clip(text), "en", window_s=5.0), f"call {i}")
    for i in (4, 5):  # a longer encoder window than the final's: they cannot ride in its batch
        jobs[f"early {i}"] = submit(f"early {i}", STT_EARLY, Request(clip(long_text), "en"), f"call {i}")
    jobs["final"] = submit("final", STT_FINAL, Request(clip(SENTENCES[0]), "en"), "call 6")
    wait(list(jobs.values()), timeout=30)
    order = sorted(done_at, key=done_at.get)
    assert order[:2] == ["busy", "final"], order
    assert wer(SENTENCES[0], jobs["final"].result().text) <= 0.15
    assert all(wer(long_text, jobs[f"early {i}"].result().text) <= 0.15 for i in (4, 5))


@pytest.mark.asyncio
async def test_calls_decoded_in_one_batch_keep_their_own_transcripts(stt, monkeypatch):
    batches: list[int] = []
    queue = stt._runtime.scheduler
    decode = queue._transcribe_batch

    def recording(requests):
        batches.append(len(requests))
        return decode(requests)

    monkeypatch.setattr(queue, "_transcribe_batch", recording)
    texts = SENTENCES[1:5]
    recorders = [Recorder() for _ in texts]
    sessions = [await stt.create_session(TranscriberOptions(on_event=r)) for r in recorders]
    scheduler = shared_scheduler()
    blockers = [Blocker(scheduler) for _ in range(scheduler.slots)]  # the model is busy: the calls' work queues up
    try:
        await asyncio.gather(*(feed(s, clip(t) + silence(900)) for s, t in zip(sessions, texts, strict=True)))
    finally:
        for blocker in blockers:
            blocker.release()
    for rec in recorders:
        assert await rec.wait_for(lambda r: r.finals, timeout=20)
    for session in sessions:
        await session.close()
    for text, rec in zip(texts, recorders, strict=True):
        assert len(rec.finals) == 1 and wer(text, rec.finals[0].text) <= 0.15, (text, rec.events)
    assert max(batches) == len(texts)  # the four finals went through the model together
    assert sum(batches) == len(texts)  # and their queued interims were answered by them, not decoded


@pytest.mark.asyncio
async def test_a_replys_first_sentence_goes_before_other_replies_later_sentences():
    tts = PiperTTS(deterministic=True)
    await tts.warm_up()
    reply_a, reply_b = asyncio.Event(), asyncio.Event()  # each turn passes its own cancel event
    _ = [c async for c in tts.stream("Sure.", reply_a)]  # reply A has begun
    scheduler = shared_scheduler()
    blockers = [Blocker(scheduler) for _ in range(scheduler.slots)]
    arrived: list[str] = []

    async def speak(name: str, text: str, cancel: asyncio.Event) -> None:
        async for _ in tts.stream(text, cancel):
            arrived.append(name)

    try:
        later = asyncio.create_task(speak("A, later sentence", "Here is the rest of the answer.", reply_a))
        while scheduler.queued < 1:
            await asyncio.sleep(0.01)
        first = asyncio.create_task(speak("B, first sentence", "Hello!", reply_b))
        while scheduler.queued < 2:
            await asyncio.sleep(0.01)
        blockers[0].release()  # one slot frees: the first sentence of B takes it
        await asyncio.wait_for(first, 10)
    finally:
        for blocker in blockers:
            blocker.release()
    await asyncio.wait_for(later, 10)
    assert arrived == ["B, first sentence", "A, later sentence"]
