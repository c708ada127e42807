"""One agent reply: ``on_turn``'s text (or fixed text) → transcript deltas and sentence chunks → TTS (bounded
look-ahead) → audio out, keeping track of which words the user actually heard.

A :class:`Reply` does not decide when it starts or stops (the engine does) and writes no history: it ends with a
:class:`TurnResult` saying what it said and what of it was heard. A *held* reply (started speculatively, before the
end of the user's turn is certain) runs ``on_turn`` and synthesizes at once but sends nothing until
:meth:`Reply.release`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from .._aio import maybe_await
from ..agent import FLUSH, Flush, TurnContext, VoiceAgent
from ..audio import AudioChunk
from .chunker import SentenceChunker
from .heard import HeardText
from .host import ReplyHost
from .metrics import TurnMetrics
from .synthesis import SentenceQueue, Speaker

log = logging.getLogger("voice.reply")

#: the reply whose code is running (tasks that on_turn's code starts inherit it), by weak reference: asyncio timers
#: keep a copy of the context they were made in until they would have fired (a TTS timeout: 15 s), and a strong
#: reference there kept every ended reply (its text, metrics, tasks) alive that long
_CURRENT: contextvars.ContextVar[weakref.ref[Reply] | None] = contextvars.ContextVar("voice_reply", default=None)


def current_reply() -> Reply | None:
    """The reply whose ``on_turn`` code (or a task it started) is running now, if any."""
    ref = _CURRENT.get()
    return ref() if ref is not None else None


STALL_SECONDS = 0.15  # a pause in on_turn's text this long releases a finished sentence to TTS

#: phases a reply reports to its call: "thinking" (visible to the client), "speaking" (first audio sent),
#: "sent" (every sample handed to the wire; the listener may still be hearing it)
PhaseListener = Callable[["Reply", str], None]


@dataclass(frozen=True)
class TurnResult:
    """How a reply ended: everything it said, what the listener heard of it, and whether it was cut short."""

    text: str
    heard: str
    interrupted: bool


async def as_text_stream(result: Any) -> AsyncIterator[str | Flush]:
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


class Reply:
    """Runs one reply on one call. ``speak=False`` gives a text-only reply; ``fixed_text`` speaks it without
    ``on_turn`` (``speak()``); ``held`` sends nothing until :meth:`release`."""

    def __init__(
        self,
        host: ReplyHost,
        agent: VoiceAgent,
        on_phase: PhaseListener,
        *,
        transcript: str | None = None,
        history: list[dict[str, Any]] | None = None,
        fixed_text: str | None = None,
        speak: bool,
        source: str = "voice",
        metrics: TurnMetrics | None = None,
        held: bool = False,
        save: bool = True,
        interruptible: bool = True,
    ) -> None:
        self.host = host
        self.agent = agent
        self.transcript = transcript
        self.history = history or []
        self.fixed_text = fixed_text
        self.speak = speak
        self.source = source
        self.save = save
        self.interruptible = interruptible
        self.metrics = metrics or TurnMetrics()
        self.cancelled = asyncio.Event()
        self.text = ""  # everything produced so far
        self.heard = HeardText()
        self.audio_started = False
        self.task: asyncio.Task[None] | None = None
        self._on_phase = on_phase
        self._failed = False  # on_turn raised
        self._gate: asyncio.Event | None = asyncio.Event() if held else None
        self._held: list[dict[str, Any] | str] = []  # messages and phases waiting for release()

    @property
    def held(self) -> bool:
        """Started speculatively and not yet released: nothing has been sent."""
        return self._gate is not None and not self._gate.is_set()

    async def until_released(self) -> None:
        """Return once the reply is the real one (at once unless it was started speculatively); work with effects
        (a tool call, a purchase) waits for this, since a held reply is dropped if the user goes on talking."""
        if self._gate is not None:
            await self._gate.wait()

    def start(self) -> Reply:
        """Begin producing (``on_turn`` runs in the reply's own task)."""
        self.metrics.started_at = time.monotonic()
        self.task = asyncio.create_task(self._run(), name=f"reply-{self.host.id}")
        return self

    def release(self, speech_ended_at: float | None, final_at: float) -> None:
        """A held reply became the real one: send what it has and go on sending."""
        self.metrics.speech_ended_at = speech_ended_at
        self.metrics.final_at = final_at
        if self._gate is not None and not self._gate.is_set():
            self._gate.set()
            held, self._held = self._held, []
            for item in held:
                self._emit(item)

    def cancel(self) -> None:
        """Stop producing now (the ``on_turn`` task is cancelled, ``ctx.cancelled`` set)."""
        self.cancelled.set()
        if self.task and not self.task.done():
            self.task.cancel()

    async def wait(self) -> None:
        """Until the reply's task has ended, however it ended."""
        if self.task:
            await asyncio.gather(self.task, return_exceptions=True)

    def result(self, heard_position: int | None = None) -> TurnResult:
        """How the reply ended. ``heard_position``: where the output stopped when it was cut short (None: it ran to
        its end). A text-only reply counts as heard whole."""
        text = self.text.strip()
        if heard_position is None and not self._failed:
            return TurnResult(text, text, False)
        heard = self.heard.heard(heard_position) if self.speak and heard_position is not None else text
        return TurnResult(text, heard.strip(), True)

    # --- the pipeline -------------------------------------------------------------------------------------

    async def _run(self) -> None:
        host = self.host
        _CURRENT.set(weakref.ref(self))
        try:
            stream = self._open_stream()
            if self.fixed_text is None:
                self._emit("thinking")
            sentences = SentenceQueue(Speaker(host, self.agent, self.metrics, self.cancelled, self.heard))
            speaking = asyncio.create_task(sentences.speak(self._send_audio)) if self.speak else None
            try:
                await self._produce_text(stream, sentences)
                if speaking:
                    await speaking
            finally:
                sentences.cancel()
                if speaking and not speaking.done():
                    speaking.cancel()
                    await asyncio.gather(speaking, return_exceptions=True)
            if self._gate is not None:
                await self._gate.wait()  # a text-only or silent reply still waits for its release
            await host.output.drain()
            self.metrics.ended_at = time.monotonic()
            if self.fixed_text is None and self.source == "voice":
                message = self.metrics.message()
                host.send(message)
                log.info("turn metrics %s %s", host.id, message)
            self._emit("sent")
            if self.speak:
                await host.output.wait_for_playout()  # interruptible until the listener has heard it all
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("turn failed on %s", host.id)
            self._failed = True
            host.send_error(f"the agent failed to answer: {type(exc).__name__}", "turn_failed")
            self._emit("sent")

    def _open_stream(self) -> AsyncIterator[str | Flush]:
        if self.fixed_text is not None:
            return as_text_stream(self.fixed_text)
        ctx = TurnContext(self.history, self.cancelled, self.host, self.source)
        return as_text_stream(self.agent.on_turn(self.transcript or "", ctx))

    async def _produce_text(self, stream: AsyncIterator[str | Flush], sentences: SentenceQueue) -> None:
        chunker = SentenceChunker(self.host.settings.chunker)
        started = False
        # when the text pauses (a slow LLM, a tool call), a finished sentence goes to TTS at once instead of waiting
        # for the next word to prove it finished
        stalls = _StallWatch(STALL_SECONDS, lambda: self._queue_sentences(sentences, chunker.stall()))
        try:
            async for piece in stream:
                stalls.progressed()
                if isinstance(piece, Flush):
                    self._queue_sentences(sentences, chunker.flush())
                    continue
                if self.metrics.first_text_at is None:
                    self.metrics.first_text_at = time.monotonic()
                if not started and piece.strip():
                    started = True
                    self._emit({"type": "transcript_start", "role": "assistant"})
                self.text += piece
                if started and self.fixed_text is None:
                    self._emit({"type": "transcript_delta", "text": piece})
                self._queue_sentences(sentences, chunker.push(piece))
        finally:
            stalls.stop()
        self.metrics.text_done_at = time.monotonic()
        if started:
            self._emit({"type": "transcript_end", "text": self.text})
        self._queue_sentences(sentences, chunker.flush())
        sentences.end()

    def _queue_sentences(self, sentences: SentenceQueue, chunks: list[str]) -> None:
        if not self.speak:
            return
        for sentence in chunks:
            if self.metrics.first_sentence_at is None:
                self.metrics.first_sentence_at = time.monotonic()
            sentences.push(sentence)

    def _emit(self, item: dict[str, Any] | str) -> None:
        """A message to the client or a phase to the call, held until the release of a held reply."""
        if self.held:
            self._held.append(item)
        elif isinstance(item, str):
            self._on_phase(self, item)
        else:
            self.host.send(item)

    async def _send_audio(self, chunk: AudioChunk) -> None:
        if self._gate is not None and not self._gate.is_set():
            await self._gate.wait()
        if not self.audio_started:
            self.audio_started = True
            self.metrics.first_audio_sent_at = time.monotonic()
            self._on_phase(self, "speaking")
        await self.host.output.write(chunk)


class _StallWatch:
    """Calls ``on_stall`` once each time ``seconds`` pass without :meth:`progressed`: one timer per pause, not a
    task and a wait per piece of text."""

    def __init__(self, seconds: float, on_stall: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._seconds = seconds
        self._on_stall = on_stall
        self._last = self._loop.time()
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(self._last + seconds, self._check)

    def progressed(self) -> None:
        """A piece arrived."""
        self._last = self._loop.time()
        if self._handle is None:  # it fired for the last pause: watch for the next one
            self._handle = self._loop.call_at(self._last + self._seconds, self._check)

    def _check(self) -> None:
        due = self._last + self._seconds
        if self._loop.time() >= due:
            self._handle = None
            self._on_stall()
        else:
            self._handle = self._loop.call_at(due, self._check)

    def stop(self) -> None:
        """The text ended."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
