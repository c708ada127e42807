"""Sentences → speech → output: synthesize up to ``tts_lookahead`` sentences ahead of the one being sent (starting as
each sentence arrives), send audio strictly in order, and record where each sentence lies on the output timeline (so
a cut-off reply knows what was heard)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from .. import observability
from .._aio import maybe_await
from ..agent import VoiceAgent
from ..audio import AudioChunk, RateAdapter
from .heard import HeardText
from .host import ReplyHost
from .metrics import TurnMetrics

log = logging.getLogger("voice.reply")


@dataclass
class Speaker:
    """What synthesis needs from the reply it speaks for."""

    host: ReplyHost
    agent: VoiceAgent
    metrics: TurnMetrics
    cancelled: asyncio.Event
    heard: HeardText


class Synthesis:
    """One sentence being synthesized; its audio is read in order by :meth:`SentenceQueue.speak`."""

    def __init__(self, speaker: Speaker, text: str) -> None:
        self.text = text
        self.chunks: asyncio.Queue[AudioChunk | None] = asyncio.Queue()
        self.task = asyncio.create_task(synthesize(speaker, self))


class SentenceQueue:
    """The sentences of one reply on their way to speech. :meth:`push` starts synthesis at once while fewer than
    ``tts_lookahead`` sentences are being synthesized ahead of the one being sent (the rest wait their turn);
    :meth:`speak` sends each sentence's audio in order. Synthesis starts in the pusher's step, so the first sentence's
    TTS does not wait for the speaking task to be woken."""

    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker
        self.lookahead = max(1, speaker.host.settings.tts_lookahead)
        self._waiting: deque[str] = deque()
        self._running: deque[Synthesis] = deque()
        self._ended = False
        self._changed = asyncio.Event()

    def push(self, sentence: str) -> None:
        """One more sentence to say."""
        self._waiting.append(sentence)
        self._top_up()

    def end(self) -> None:
        """No more sentences will come."""
        self._ended = True
        self._changed.set()

    def _top_up(self) -> None:
        while self._waiting and len(self._running) < self.lookahead:
            self._running.append(Synthesis(self.speaker, self._waiting.popleft()))
            self._changed.set()

    async def speak(self, send_audio: Callable[[AudioChunk], Awaitable[None]]) -> None:
        """Until :meth:`end` and the last sentence is sent: each sentence's audio, in order. Whoever owns the queue
        calls :meth:`cancel` when the reply ends, however it ends."""
        while True:
            if not self._running:
                if self._ended:
                    return
                self._changed.clear()
                await self._changed.wait()
                continue
            job = self._running[0]
            output = self.speaker.host.output
            # recorded as it is written, so an interruption mid-sentence still knows what was heard of it
            segment = self.speaker.heard.begin(job.text, output.written, output.sample_rate)
            while (chunk := await job.chunks.get()) is not None:
                await send_audio(chunk)
                segment.end = output.written
            segment.complete = True
            self._running.popleft()
            self._top_up()

    def cancel(self) -> None:
        """Stop every synthesis in flight; nothing more is said."""
        self._waiting.clear()
        for job in self._running:
            job.task.cancel()


async def synthesize(reply: Speaker, job: Synthesis) -> None:
    """Run TTS for one sentence into its queue, converted to what the output takes."""
    host, agent, metrics = reply.host, reply.agent, reply.metrics
    try:
        text = await maybe_await(agent.before_synthesize(job.text, host))
        if not text or not text.strip() or host.tts is None:
            return
        tts, output = host.tts, host.output
        # a format the wire takes as is (μ-law for a phone line) skips conversion, unless after_synthesize looks at
        # the audio: it gets the same PCM on every transport
        hooked = type(agent).after_synthesize is not VoiceAgent.after_synthesize
        passthrough = output.passthrough if output.passthrough and not hooked else None
        direct = passthrough if passthrough and tts.supports(*passthrough) else None
        t0 = time.monotonic()
        adapter = RateAdapter(output.sample_rate)
        stream = tts.stream(
            text, reply.cancelled, encoding=direct[0] if direct else "pcm16", sample_rate=direct[1] if direct else None
        )
        async for chunk in _with_timeout(stream, host.settings.tts_timeout_seconds):
            if metrics.first_tts_audio_at is None:
                metrics.first_tts_audio_at = time.monotonic()
            chunk = await maybe_await(agent.after_synthesize(chunk, job.text, host))
            if chunk is None or not chunk.data:
                continue
            if chunk.encoding == "pcm16" and chunk.sample_rate != output.sample_rate:
                chunk = AudioChunk(adapter.process(chunk.data, chunk.sample_rate), output.sample_rate)
            job.chunks.put_nowait(chunk)
        tail = adapter.flush()
        if tail:
            job.chunks.put_nowait(AudioChunk(tail, output.sample_rate))
        metrics.tts_seconds += time.monotonic() - t0
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        log.warning("TTS timed out on %s", host.id)
        observability.provider_error("tts", type(host.tts).__name__)
        host.send_error("speech synthesis timed out for part of the reply", "tts_failed")
    except Exception as exc:  # noqa: BLE001 - a provider failure must not end the call
        log.warning("TTS failed on %s: %s", host.id, exc)
        observability.provider_error("tts", type(host.tts).__name__)
        host.send_error("speech synthesis failed for part of the reply", "tts_failed")
    finally:
        job.chunks.put_nowait(None)


async def _with_timeout(stream: AsyncIterator[AudioChunk], seconds: float) -> AsyncIterator[AudioChunk]:
    """A stalled provider must not stall the reply: each chunk has ``seconds`` to arrive (TimeoutError)."""
    iterator = stream.__aiter__()
    while True:
        try:
            async with asyncio.timeout(seconds):
                chunk = await iterator.__anext__()
        except StopAsyncIteration:
            return
        yield chunk

