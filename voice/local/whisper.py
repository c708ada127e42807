"""Offline streaming speech-to-text: Silero VAD endpointing on top of the batch Whisper tiny.en model.

Whisper is a batch model and costs ~0.35 s per call on 2 cores whatever the clip length (its encoder always
sees a 30 s window). So a session:

* buffers audio and runs the Silero VAD (shipped with faster-whisper) on every 32 ms chunk, carrying its state;
  ``SpeechStarted`` fires after ~100 ms of speech, with 300 ms of pre-roll kept so the first word is whole;
* while the user speaks, sends throttled interims through a *cheap* decode (the encoder sees the clip + 5 s
  instead of 30 s: ~0.1 s, a little less accurate, good enough for a provisional transcript);
* **starts the final transcription as soon as the silence begins** (``early_transcribe_ms``), in parallel with
  waiting out the end-of-utterance window (``end_silence_ms``). If speech resumes the early result is dropped
  and the utterance goes on; otherwise it becomes the ``Final`` the moment both are done.

Endpointing is driven by audio *positions* (samples fed), not the wall clock, so it behaves the same whether
audio arrives in real time or faster (tests). A wall-clock fallback ends the turn if audio stops arriving.
All model calls go through one priority queue per process: finals before early finals before interims.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import StreamResampler
from ..providers.base import (
    EagerFinal,
    Final,
    Interim,
    SpeechStarted,
    SpeechStopped,
    Transcriber,
    TranscriberError,
    TranscriberEvent,
    TranscriberOptions,
    TranscriberSession,
    TurnResumed,
)
from ._pool import STT_EARLY, STT_FINAL, STT_INTERIM, shared_executor
from .whisper_model import CHUNK, RATE, Decoded, Request, _load_runtime, _Runtime, is_hallucination, resolve_model_path

log = logging.getLogger("voice.whisper")

CHUNK_MS = CHUNK * 1000 / RATE
FINAL, EARLY, INTERIM = STT_FINAL, STT_EARLY, STT_INTERIM  # job priorities (lower runs first), shared with Piper
@dataclass(frozen=True)
class WhisperSettings:
    """Endpointing and decoding knobs. Any field can be overridden per call via ``TranscriberOptions.extra``."""

    end_silence_ms: int = 450  # silence that ends a turn; > the 350 ms pauses people make mid-sentence
    early_transcribe_ms: int | None = 64  # start the final this soon into a silence; None = naive (after the window)
    start_speech_ms: int = 96  # speech needed before SpeechStarted (barge-in); clicks never get there
    stop_speech_ms: int = 150  # silence before SpeechStopped (gaps in words are shorter); then speech: SpeechStarted
    min_speech_ms: int = 200  # turns with less voiced audio are blips (cough, click): no Final
    preroll_ms: int = 300  # audio kept from before the speech start
    interim_results: bool = True
    first_interim_ms: int = 150  # the first interim this soon after speech starts (tells "stop" from "mhm" early)
    interim_interval_ms: int = 800  # audio between two interims
    interim_window_s: float = 5.0  # encoder window of interims beyond the clip (cheap); None = full 30 s
    speech_threshold: float = 0.5  # Silero probability that starts speech; it ends below threshold - 0.15
    max_utterance_s: float = 28.0  # Whisper sees 30 s: a longer monologue is cut into several turns
    stall_timeout_ms: int = 1000  # wall-clock fallback: end a pausing turn if no audio arrives for this long
    eager_final: bool = True  # announce the early transcription as an EagerFinal (the reply starts speculatively)
    beam_size: int = 1  # beam 5 measured: same WER on clean speech, -1 word in 20 noisy sentences, +50 ms/call


class WhisperTranscriber(Transcriber):
    """Offline STT: Whisper tiny.en (int8, CPU) with streaming endpointing. One instance serves many calls.

    ``model_path``: a CTranslate2 Whisper directory (default ``$VOICE_WHISPER_MODEL`` or the bundled tiny.en).
    ``language``: for multilingual models (tiny.en ignores it). Other keyword arguments: :class:`WhisperSettings`.
    """

    emits_speech_start = True
    engine_endpointing = True

    def __init__(self, model_path: str | Path | None = None, *, language: str = "en", **settings: Any) -> None:
        self.model_path = resolve_model_path(model_path)  # fail at construction, not mid-call
        self.language = language
        self.settings = WhisperSettings(**settings)
        self._runtime: _Runtime | None = None

    async def _ensure_loaded(self) -> _Runtime:
        if self._runtime is None:
            loop = asyncio.get_running_loop()
            self._runtime = await loop.run_in_executor(shared_executor(), _load_runtime, self.model_path)
        return self._runtime

    async def warm_up(self) -> None:
        """Load the model and run one short decode, so the first real call pays no start-up cost."""
        runtime = await self._ensure_loaded()
        noise = (np.random.default_rng(0).standard_normal(RATE // 2) * 300).astype("<i2").tobytes()
        job = runtime.scheduler.submit(FINAL, Request(noise, self.language))
        await asyncio.wrap_future(job)

    async def create_session(self, options: TranscriberOptions) -> TranscriberSession:
        """A session for one call (per-call settings from ``options.extra``)."""
        runtime = await self._ensure_loaded()
        fields = {f.name for f in dataclasses.fields(WhisperSettings)}
        settings = dataclasses.replace(self.settings, **{k: v for k, v in options.extra.items() if k in fields})
        if options.max_silence_ms is not None:  # the engine decides the end of turn; this is only the fallback
            settings = dataclasses.replace(settings, end_silence_ms=options.max_silence_ms)
        return WhisperSession(runtime, options, settings, options.language or self.language)


@dataclass(eq=False)
class _Utterance:
    """The turn in progress. Positions are in samples since the session started."""

    audio: bytearray
    voiced: int  # voiced samples so far
    last_voiced: int  # position where the speech last stopped (refined within the chunk)
    last_voiced_at: float  # time.monotonic() estimate of that moment
    early: asyncio.Future | None = None  # final transcription started at the start of the current silence
    next_interim: int = 0  # position after which the next interim may start
    interim_job: asyncio.Future | None = None
    interim_text: str = ""
    eager_sent: bool = False  # an EagerFinal went out for the current early transcription
    stopped_sent: bool = False  # a SpeechStopped went out for the current pause
    commit_requested: bool = False  # commit() came while a sound was starting: end at the first sure silence
    sound: bool = False  # the last chunk had sound that may be speech resuming


class WhisperSession(TranscriberSession):
    """One call. ``feed`` only buffers and runs the VAD (~0.1 ms per 32 ms); model work is queued."""

    def __init__(self, runtime: _Runtime, options: TranscriberOptions, settings: WhisperSettings, language: str):
        self._rt, self._s, self._language = runtime, settings, language
        self._emit_cb = options.on_event
        self._loop = asyncio.get_running_loop()
        self._resampler = StreamResampler(options.sample_rate, RATE) if options.sample_rate != RATE else None
        self._h = np.zeros((1, 1, 128), np.float32)  # Silero's recurrent state, carried across chunks
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(64, np.float32)  # Silero looks at 64 samples before each chunk
        self._pending = bytearray()
        self._pos = 0
        self._speaking = False
        self._onset = 0  # consecutive speech chunks while idle
        preroll_chunks = round((settings.preroll_ms + settings.start_speech_ms) / CHUNK_MS) + 1
        self._preroll: deque[bytes] = deque(maxlen=preroll_chunks)  # includes the onset chunks
        self._utt: _Utterance | None = None
        self._finals: deque[tuple[_Utterance, asyncio.Future]] = deque()  # emitted in utterance order
        self._jobs: set[asyncio.Future] = set()
        self._stall: asyncio.TimerHandle | None = None
        self._closed = False

    # -- audio in --

    def feed(self, pcm: bytes) -> None:
        """Buffer audio and run the VAD; model work is queued, never done here."""
        if self._closed or not pcm:
            return
        now = time.monotonic()
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)
        self._pending += pcm
        step, offset = CHUNK * 2, 0
        while len(self._pending) - offset >= step:
            chunk = bytes(self._pending[offset : offset + step])
            offset += step
            # the chunk's end arrived before the rest of this buffer did
            self._process(chunk, now - (len(self._pending) - offset) / 2 / RATE)
        del self._pending[:offset]
        self._arm_stall_timer()

    def _vad(self, chunk: np.ndarray) -> float:
        window = np.concatenate([self._context, chunk])[None]
        prob, self._h, self._c = self._rt.silero.run(None, {"input": window, "h": self._h, "c": self._c})
        self._context = chunk[-64:]
        return float(np.asarray(prob).reshape(-1)[0])

    def _process(self, chunk: bytes, chunk_end_at: float) -> None:
        samples = np.frombuffer(chunk, dtype="<i2").astype(np.float32) / 32768.0
        prob = self._vad(samples)
        self._pos += CHUNK
        s = self._s
        self._speaking = prob >= (s.speech_threshold - 0.15 if self._speaking else s.speech_threshold)
        self._preroll.append(chunk)
        utt = self._utt
        if utt is None:
            self._onset = self._onset + 1 if self._speaking else 0
            if self._onset * CHUNK_MS >= s.start_speech_ms:
                self._start_utterance(chunk_end_at)
            return
        utt.audio += chunk
        # Silero's hysteresis can run a chunk past the end of speech: only sound counts as voice.
        # Where does it really stop inside the chunk? (the last of 4 blocks of 8 ms above -55 dBFS)
        tail = samples.reshape(4, -1)
        loud = np.nonzero(np.sqrt((tail * tail).mean(axis=1)) > 0.00178)[0]
        if self._speaking and loud.size:
            quiet = (3 - int(loud[-1])) * CHUNK // 4
            utt.voiced += CHUNK
            utt.last_voiced, utt.last_voiced_at = self._pos - quiet, chunk_end_at - quiet / RATE
            if utt.stopped_sent:
                self._emit(SpeechStarted())  # speaking again after a pause
            utt.stopped_sent = utt.commit_requested = utt.sound = False
            if utt.early is not None:  # speech resumed: the early transcription is stale
                self._drop(utt.early)
                utt.early = None
                if utt.eager_sent:
                    utt.eager_sent = False
                    self._emit(TurnResumed())
            self._maybe_interim(utt)
        else:
            silence_ms = (self._pos - utt.last_voiced) * 1000 / RATE
            if not utt.stopped_sent and silence_ms >= s.stop_speech_ms:
                utt.stopped_sent = True
                self._emit(SpeechStopped(utt.last_voiced_at))
            if (
                s.early_transcribe_ms is not None and utt.early is None and silence_ms >= s.early_transcribe_ms
                and utt.voiced * 1000 / RATE >= s.min_speech_ms
            ):
                utt.early = self._submit(EARLY, bytes(utt.audio), None)
                if s.eager_final:
                    utt.early.add_done_callback(functools.partial(self._eager, utt))
            # Sound that Silero is not yet sure about may be speech resuming (its onset lags a chunk or two):
            # give it one more chunk before ending the turn, so a 350 ms pause is never cut.
            hold = loud.size > 0 and prob >= 0.2 and silence_ms < s.end_silence_ms + CHUNK_MS
            utt.sound = loud.size > 0  # a sound Silero has not called speech (yet): commit() waits a chunk
            if (silence_ms >= s.end_silence_ms or utt.commit_requested) and not hold:
                self._end_utterance()
                return
        if len(utt.audio) >= s.max_utterance_s * RATE * 2:
            self._end_utterance()
            self._start_utterance(chunk_end_at, announce=False)  # the user is still talking

    # -- turns --

    def _start_utterance(self, now: float, announce: bool = True) -> None:
        """A new turn, with the pre-roll (unless it continues one cut at ``max_utterance_s``)."""
        audio = bytearray(b"".join(self._preroll) if announce else b"")
        next_interim = self._pos + self._ms(self._s.first_interim_ms)
        self._utt = _Utterance(audio, self._onset * CHUNK, self._pos, now, next_interim=next_interim)
        self._onset = 0
        if announce:
            self._emit(SpeechStarted())

    def _end_utterance(self) -> None:
        utt, self._utt = self._utt, None
        if utt is None:
            return
        if utt.interim_job is not None:
            self._drop(utt.interim_job)
        if utt.voiced * 1000 / RATE < self._s.min_speech_ms:  # a blip: no turn
            if utt.early is not None:
                self._drop(utt.early)
            if utt.interim_text:
                self._emit(Interim(""))
            return
        job = utt.early
        if job is None:
            job = self._submit(FINAL, bytes(utt.audio), None)
        else:
            self._rt.scheduler.promote(job._voice_cf, FINAL)  # type: ignore[attr-defined]
        self._finals.append((utt, job))
        job.add_done_callback(lambda _: self._flush_finals())

    def _flush_finals(self) -> None:
        while self._finals and self._finals[0][1].done():
            utt, job = self._finals.popleft()
            if self._closed or job.cancelled():
                continue
            if job.exception() is not None:
                self._emit(TranscriberError(f"whisper failed: {job.exception()!r}"))
                continue
            decoded: Decoded | None = job.result()
            if decoded is not None and not is_hallucination(decoded, utt.voiced / RATE):
                self._emit(Final(decoded.text, utt.last_voiced_at, math.exp(decoded.avg_logprob)))
            elif utt.interim_text:
                self._emit(Interim(""))

    def _eager(self, utt: _Utterance, job: asyncio.Future) -> None:
        """The early transcription is ready before the silence window has passed: let the engine start the
        reply now (it speaks only once the Final confirms the turn)."""
        stale = self._closed or self._utt is not utt or utt.early is not job
        if stale or job.cancelled() or job.exception() is not None:
            return
        decoded: Decoded | None = job.result()
        if decoded is not None and not is_hallucination(decoded, utt.voiced / RATE):
            utt.eager_sent = True
            self._emit(EagerFinal(decoded.text, utt.last_voiced_at, math.exp(decoded.avg_logprob)))

    def _maybe_interim(self, utt: _Utterance) -> None:
        s = self._s
        if not s.interim_results or utt.interim_job is not None or self._pos < utt.next_interim:
            return
        utt.next_interim = self._pos + self._ms(s.interim_interval_ms)
        job = utt.interim_job = self._submit(INTERIM, bytes(utt.audio), s.interim_window_s)

        def done(_: asyncio.Future) -> None:
            utt.interim_job = None
            if job.cancelled() or job.exception() is not None or self._closed or self._utt is not utt:
                return  # the turn has ended: the final is on its way
            text = job.result().text if job.result() is not None else ""
            if text and text != utt.interim_text:
                utt.interim_text = text
                self._emit(Interim(text))

        job.add_done_callback(done)

    # -- plumbing --

    def _ms(self, ms: float) -> int:
        return int(ms * RATE / 1000)

    def _submit(self, priority: int, pcm: bytes, window_s: float | None) -> asyncio.Future:
        rt, language, beam, stale = self._rt, self._language, self._s.beam_size, threading.Event()
        cf = rt.scheduler.submit(priority, Request(pcm, language, beam, window_s, stale), owner=self)
        job = asyncio.wrap_future(cf, loop=self._loop)
        job._voice_cf, job._voice_stale = cf, stale  # type: ignore[attr-defined]  # to cancel/promote it
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return job

    def _drop(self, job: asyncio.Future) -> None:
        job._voice_cf.cancel()  # type: ignore[attr-defined]  # only succeeds while still queued
        job._voice_stale.set()  # type: ignore[attr-defined]  # if running: stop after the encoder
        job.cancel()

    def _emit(self, event: TranscriberEvent) -> None:
        if not self._closed:
            self._emit_cb(event)

    def _arm_stall_timer(self) -> None:
        """If audio stops arriving mid-pause (muted mic, dropped stream), end the turn by the clock."""
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        utt = self._utt
        if utt is not None and not self._speaking:
            self._stall = self._loop.call_later(self._s.stall_timeout_ms / 1000, self._on_stall, utt)

    def _on_stall(self, utt: _Utterance) -> None:
        if self._utt is utt and not self._closed:
            self._end_utterance()

    async def commit(self) -> None:
        """End the current turn now (the engine or the client knows the user stopped) and wait for its Final. If a
        sound has just begun (speech resuming after a pause?) the turn ends at the first chunk Silero calls silence
        instead, and a resumption is reported as usual (TurnResumed)."""
        if self._closed:
            return
        utt = self._utt
        if utt is not None and not self._speaking and (utt.sound or self._pending_is_loud()):
            log.debug("commit deferred: a sound at %.3f s", self._pos / RATE)
            utt.commit_requested = True
            return
        if utt is not None:
            if utt.early is None:  # (an early transcription already covers all the speech: keep it)
                utt.audio += self._pending
            self._pending.clear()
            self._end_utterance()
        pending = [job for _, job in self._finals]
        if pending:
            await asyncio.wait(pending)

    def _pending_is_loud(self) -> bool:
        """Whether the audio not yet in a chunk has sound in it (an 8 ms block above -55 dBFS)."""
        usable = len(self._pending) - len(self._pending) % 256
        if usable <= 0:
            return False
        blocks = np.frombuffer(bytes(self._pending[:usable]), dtype="<i2").astype(np.float32).reshape(-1, 128) / 32768
        return bool((np.sqrt((blocks * blocks).mean(axis=1)) > 0.00178).any())

    async def close(self) -> None:
        """Stop: drop queued model work and emit nothing more."""
        if self._closed:
            return
        self._closed = True
        if self._stall is not None:
            self._stall.cancel()
        for job in list(self._jobs):
            self._drop(job)
        self._finals.clear()
        self._utt = None
