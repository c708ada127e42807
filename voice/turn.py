"""One agent reply: ``on_turn``'s text → transcript deltas and sentence chunks → TTS (bounded look-ahead) → audio out,
keeping track of which words the user actually heard.

A :class:`Turn` is owned by its :class:`~voice.call.Call`; the call cancels it on barge-in or when a newer turn
supersedes it, then asks it to save what was heard.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import protocol
from .agent import FLUSH, Flush, TurnContext, VoiceAgent, maybe_await
from .audio import AudioChunk, StreamResampler
from .chunker import SentenceChunker
from .playback import HeardText

if TYPE_CHECKING:
    from .call import Call

log = logging.getLogger("voice.turn")

#: the turn whose code is running (tasks that on_turn's code runs in inherit it)
CURRENT_TURN: contextvars.ContextVar[Turn | None] = contextvars.ContextVar("voice_current_turn", default=None)

STALL_SECONDS = 0.15  # a pause in on_turn's text this long releases a finished sentence to TTS


@dataclass
class TurnMetrics:
    """Monotonic timestamps of one turn; :meth:`message` turns them into the ``metrics`` message."""

    speech_ended_at: float | None = None  # user stopped speaking
    final_at: float | None = None  # final transcript received
    started_at: float = field(default_factory=time.monotonic)  # on_turn called
    first_text_at: float | None = None
    text_done_at: float | None = None
    first_sentence_at: float | None = None
    first_tts_audio_at: float | None = None
    first_audio_sent_at: float | None = None
    tts_seconds: float = 0.0
    ended_at: float | None = None

    def message(self) -> dict:
        def ms(a: float | None, b: float | None) -> int | None:
            return None if a is None or b is None else round(1000 * (b - a))

        start = self.started_at
        return {
            "type": "metrics",
            # @cloudflare/voice's fields (its client reads these four)
            "llm_ms": ms(start, self.text_done_at),
            "tts_ms": round(1000 * self.tts_seconds),
            "first_audio_ms": ms(start, self.first_audio_sent_at) or 0,
            "total_ms": ms(self.speech_ended_at or start, self.ended_at),
            # ours
            "stt_ms": ms(self.speech_ended_at, self.final_at),
            "first_text_ms": ms(start, self.first_text_at),
            "tts_first_audio_ms": ms(self.first_sentence_at, self.first_tts_audio_at),
            "voice_to_voice_ms": ms(self.speech_ended_at, self.first_audio_sent_at),
            "first_text_from_speech_ms": ms(self.speech_ended_at, self.first_text_at),
        }


async def as_text_stream(result) -> AsyncIterator[str | Flush]:
    """Normalise what ``on_turn`` may produce (str, None, awaitable, async iterator) into an async iterator."""
    result = await maybe_await(result)
    if result is None:
        return
    if isinstance(result, str):
        yield result
        return
    async for piece in result:
        if piece is FLUSH:
            yield FLUSH
        elif piece:
            yield str(piece)


class _Synthesis:
    """One sentence being synthesized; its audio is read in order by the speaker loop."""

    def __init__(self, turn: Turn, text: str) -> None:
        self.text = text
        self.chunks: asyncio.Queue[AudioChunk | None] = asyncio.Queue()
        self.task = asyncio.create_task(turn._synthesize(self))


class Turn:
    """Runs one reply on one call. ``speak=False`` gives a text-only reply."""

    def __init__(
        self,
        call: Call,
        transcript: str | None,
        *,
        speak: bool,
        source: str = "voice",
        fixed_text: str | None = None,
        metrics: TurnMetrics | None = None,
        save: bool = True,
        speculative: bool = False,
    ) -> None:
        self.call = call
        self.agent: VoiceAgent = call.agent  # type: ignore[assignment]
        self.transcript = transcript
        self.speak = speak
        self.source = source
        self.fixed_text = fixed_text  # speak(): no on_turn
        self.save = save
        self.metrics = metrics or TurnMetrics()
        self.cancelled = asyncio.Event()
        self.text = ""  # everything on_turn produced
        self.heard = HeardText()
        self.audio_started = False
        self.task: asyncio.Task | None = None
        self._saved = False
        # a speculative turn runs on_turn and synthesizes at once, but sends nothing until commit() (or is
        # cancelled silently): messages wait in _held, audio waits on the gate
        self.gate: asyncio.Event | None = asyncio.Event() if speculative else None
        self._held: list[dict] = []
        # "history before this turn": taken now, before the call stores the user's message
        self.history = self.agent.recent_messages() if fixed_text is None else []

    def start(self) -> Turn:
        self.metrics.started_at = time.monotonic()
        self.task = asyncio.create_task(self._run(), name=f"turn-{self.call.id}")
        return self

    def commit(self, speech_ended_at: float | None, final_at: float) -> None:
        """A speculative turn became the real one: start sending its reply."""
        self.metrics.speech_ended_at = speech_ended_at
        self.metrics.final_at = final_at
        if self.gate is not None:
            self.gate.set()
            held, self._held = self._held, []
            for message in held:
                self._send(message)

    def cancel(self) -> None:
        self.cancelled.set()
        if self.task and not self.task.done():
            self.task.cancel()

    async def wait(self) -> None:
        if self.task:
            await asyncio.gather(self.task, return_exceptions=True)

    async def save_interrupted(self, heard_position: int) -> None:
        """After a barge-in: store only what the user heard (nothing if nothing was heard)."""
        if self._saved or not self.save:
            return
        self._saved = True
        heard = self.heard.heard(heard_position) if self.speak else self.text
        if heard.strip():
            await self.agent.add_message("assistant", heard.strip(), interrupted=True)

    # --- the pipeline -------------------------------------------------------------------------------------

    async def _run(self) -> None:
        call = self.call
        CURRENT_TURN.set(self)
        try:
            stream = self._open_stream()
            if self.fixed_text is None:
                self._send(protocol.status("thinking"))
            sentences: asyncio.Queue[str | None] = asyncio.Queue()
            speaker = asyncio.create_task(self._speak_loop(sentences)) if self.speak else None
            try:
                await self._produce_text(stream, sentences)
                if speaker:
                    await speaker
            finally:
                if speaker and not speaker.done():
                    speaker.cancel()
                    await asyncio.gather(speaker, return_exceptions=True)
            if self.gate is not None:
                await self.gate.wait()  # a text-only or silent reply still waits for its commit
            await call.output.drain()
            self.metrics.ended_at = time.monotonic()
            if self.fixed_text is None and self.source == "voice":
                call.send(self.metrics.message())
                log.info("turn metrics %s %s", call.id, self.metrics.message())
            if self.speak:
                call.set_status("listening")
                await self._wait_for_playout()
            if self.save and not self._saved and self.text.strip():
                self._saved = True
                await self.agent.add_message("assistant", self.text.strip())
            if not self.speak:
                call.set_status("listening" if call.in_call else "idle")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's on_turn may raise anything
            log.exception("turn failed on %s", call.id)
            call.send_error(f"the agent failed to answer: {type(exc).__name__}", "turn_failed")
            if self.save and not self._saved and self.text.strip():
                self._saved = True
                await self.agent.add_message("assistant", self.text.strip(), interrupted=True)
            call.set_status("listening" if call.in_call else "idle")
        finally:
            call.turn_finished(self)

    def _open_stream(self) -> AsyncIterator[str]:
        if self.fixed_text is not None:
            return as_text_stream(self.fixed_text)
        ctx = TurnContext(self.history, self.cancelled, self.call, self.source)
        return as_text_stream(self.agent.on_turn(self.transcript or "", ctx))

    async def _produce_text(self, stream: AsyncIterator[str], sentences: asyncio.Queue[str | None]) -> None:
        chunker = SentenceChunker(self.call.settings.chunker)
        started = False
        async for piece in self._with_stalls(stream, chunker, sentences):
            if piece is FLUSH:
                if self.speak:
                    for sentence in chunker.flush():
                        self._queue_sentence(sentences, sentence)
                continue
            if self.metrics.first_text_at is None:
                self.metrics.first_text_at = time.monotonic()
            if not started and piece.strip():
                started = True
                self._send({"type": "transcript_start", "role": "assistant"})
            self.text += piece
            if started and self.fixed_text is None:
                self._send({"type": "transcript_delta", "text": piece})
            if self.speak:
                for sentence in chunker.push(piece):
                    self._queue_sentence(sentences, sentence)
        self.metrics.text_done_at = time.monotonic()
        if started:
            self._send({"type": "transcript_end", "text": self.text})
        if self.speak:
            for sentence in chunker.flush():
                self._queue_sentence(sentences, sentence)
            sentences.put_nowait(None)

    async def _with_stalls(self, stream, chunker: SentenceChunker, sentences) -> AsyncIterator[str]:
        """Pass the text through; when it pauses (a slow LLM, a tool call), release a finished sentence at once
        instead of waiting for the next word to prove it finished."""
        iterator = stream.__aiter__()
        while True:
            step = asyncio.ensure_future(iterator.__anext__())
            try:
                done, _ = await asyncio.wait({step}, timeout=STALL_SECONDS)
                if not done and self.speak:
                    for sentence in chunker.stall():
                        self._queue_sentence(sentences, sentence)
                piece = await step
            except StopAsyncIteration:
                return
            finally:
                if not step.done():
                    step.cancel()
            yield piece

    def _queue_sentence(self, sentences: asyncio.Queue[str | None], sentence: str) -> None:
        if self.metrics.first_sentence_at is None:
            self.metrics.first_sentence_at = time.monotonic()
        sentences.put_nowait(sentence)

    async def _speak_loop(self, sentences: asyncio.Queue[str | None]) -> None:
        """Start up to ``tts_lookahead`` syntheses ahead of the one being sent; send audio strictly in order."""
        lookahead = max(1, self.call.settings.tts_lookahead)
        running: deque[_Synthesis] = deque()
        ended = False

        def top_up() -> None:
            nonlocal ended
            while not ended and len(running) < lookahead and not sentences.empty():
                text = sentences.get_nowait()
                if text is None:
                    ended = True
                else:
                    running.append(_Synthesis(self, text))

        try:
            while True:
                top_up()
                if not running:
                    if ended:
                        return
                    text = await sentences.get()
                    if text is None:
                        return
                    running.append(_Synthesis(self, text))
                    continue
                job = running[0]
                output = self.call.output
                # recorded as it is written, so an interruption mid-sentence still knows what was heard of it
                segment = self.heard.begin(job.text, output.written, output.sample_rate)
                while (chunk := await job.chunks.get()) is not None:
                    await self._send_audio(chunk)
                    segment.end = output.written
                    top_up()
                segment.complete = True
                running.popleft()
        finally:
            for job in running:
                job.task.cancel()

    async def _synthesize(self, job: _Synthesis) -> None:
        """Run TTS for one sentence into its queue, converted to what the output takes."""
        call, agent = self.call, self.agent
        try:
            text = await maybe_await(agent.before_synthesize(job.text, call))
            if not text or not text.strip():
                return
            tts = call.tts
            output = call.output
            direct = output.passthrough if output.passthrough and tts.supports(*output.passthrough) else None
            t0 = time.monotonic()
            resampler: StreamResampler | None = None
            stream = tts.stream(
                text, self.cancelled, encoding=direct[0] if direct else "pcm16", sample_rate=direct[1] if direct else None
            )
            async for chunk in _with_timeout(stream, self.call.settings.tts_timeout_seconds):
                if self.metrics.first_tts_audio_at is None:
                    self.metrics.first_tts_audio_at = time.monotonic()
                chunk = await maybe_await(agent.after_synthesize(chunk, job.text, call))
                if chunk is None or not chunk.data:
                    continue
                if chunk.encoding == "pcm16" and chunk.sample_rate != output.sample_rate:
                    if resampler is None or resampler.in_rate != chunk.sample_rate:
                        resampler = StreamResampler(chunk.sample_rate, output.sample_rate)
                    chunk = AudioChunk(resampler.process(chunk.data), output.sample_rate)
                job.chunks.put_nowait(chunk)
            if resampler is not None:
                tail = resampler.process(b"", last=True)
                if tail:
                    job.chunks.put_nowait(AudioChunk(tail, output.sample_rate))
            self.metrics.tts_seconds += time.monotonic() - t0
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            log.warning("TTS timed out on %s", call.id)
            call.send_error("speech synthesis timed out for part of the reply", "tts_failed")
        except Exception as exc:  # noqa: BLE001 - a provider failure must not end the call
            log.warning("TTS failed on %s: %s", call.id, exc)
            call.send_error("speech synthesis failed for part of the reply", "tts_failed")
        finally:
            job.chunks.put_nowait(None)

    def _send(self, message: dict) -> None:
        """To the client, or held until the commit of a speculative turn."""
        if self.gate is not None and not self.gate.is_set():
            self._held.append(message)
        elif message["type"] == "status":
            self.call.set_status(message["status"])
        else:
            self.call.send(message)

    async def _send_audio(self, chunk: AudioChunk) -> None:
        if self.gate is not None and not self.gate.is_set():
            await self.gate.wait()
        if not self.audio_started:
            self.audio_started = True
            self.metrics.first_audio_sent_at = time.monotonic()
            self.call.set_status("speaking")
        await self.call.output.write(chunk)

    async def _wait_for_playout(self) -> None:
        """Stay interruptible until the listener has heard the whole reply."""
        output = self.call.output
        while output.is_playing():
            remaining = (output.written - output.played()) / output.sample_rate
            await asyncio.sleep(min(max(remaining, 0.02), 0.25))


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
