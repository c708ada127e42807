"""Sentences → speech → output: synthesize up to ``tts_lookahead`` sentences ahead of the one being sent, send audio
strictly in order, and record where each sentence lies on the output timeline (so a cut-off reply knows what was
heard)."""

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
    """One sentence being synthesized; its audio is read in order by :func:`speak_sentences`."""

    def __init__(self, speaker: Speaker, text: str) -> None:
        self.text = text
        self.chunks: asyncio.Queue[AudioChunk | None] = asyncio.Queue()
        self.task = asyncio.create_task(synthesize(speaker, self))


async def speak_sentences(
    reply: Speaker, sentences: asyncio.Queue[str | None], send_audio: Callable[[AudioChunk], Awaitable[None]]
) -> None:
    """Until ``None`` arrives on ``sentences``: synthesize ahead, send each sentence's audio in order."""
    lookahead = max(1, reply.host.settings.tts_lookahead)
    running: deque[Synthesis] = deque()
    ended = False

    def top_up() -> None:
        nonlocal ended
        while not ended and len(running) < lookahead and not sentences.empty():
            text = sentences.get_nowait()
            if text is None:
                ended = True
            else:
                running.append(Synthesis(reply, text))

    try:
        while True:
            top_up()
            if not running:
                if ended:
                    return
                text = await sentences.get()
                if text is None:
                    return
                running.append(Synthesis(reply, text))
                continue
            job = running[0]
            output = reply.host.output
            # recorded as it is written, so an interruption mid-sentence still knows what was heard of it
            segment = reply.heard.begin(job.text, output.written, output.sample_rate)
            while (chunk := await job.chunks.get()) is not None:
                await send_audio(chunk)
                segment.end = output.written
                top_up()
            segment.complete = True
            running.popleft()
    finally:
        for job in running:
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

