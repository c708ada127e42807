"""One connection's state machine: idle → listening → thinking → speaking, turn decisions and barge-in.

A transport (WebSocket, Twilio, WebRTC) creates a :class:`Call` with a :class:`Peer` — how to send JSON to the client
and where audio goes — then feeds it text frames (:meth:`Call.handle_text`), PCM (:meth:`Call.handle_audio`) and
finally :meth:`Call.close`. The call never touches sockets itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from abc import ABC, abstractmethod
from typing import Any

from . import protocol
from .agent import BaseAgent, VoiceAgent, VoiceInputAgent, maybe_await
from .config import Settings
from .limits import TokenBucket
from .speech_input import SpeechInput
from .playback import AudioOutput
from .providers.base import EagerFinal, Final, Interim, SpeechStarted, TranscriberError, TurnResumed
from .turn import CURRENT_TURN, Turn, TurnMetrics
from .vad import VADConfig, VoiceActivityDetector

log = logging.getLogger("voice.call")


class Peer(ABC):
    """The transport side of a call."""

    output: AudioOutput

    @abstractmethod
    def send_json(self, message: dict[str, Any]) -> None:
        """Queue a JSON message to the client (never blocks)."""

    @abstractmethod
    async def close(self, code: int = protocol.CLOSE_NORMAL, reason: str = "") -> None:
        """Close the connection (for a phone call: hang up)."""

    def on_playback_ack(self, played_samples: int) -> None:  # noqa: B027 - only WebSocket clients send these
        """The client reported its playback position."""


class Call:
    """A connection to one agent instance; ``in_call`` once ``start_call`` succeeded."""

    def __init__(
        self,
        agent: BaseAgent,
        peer: Peer,
        settings: Settings,
        *,
        query: dict[str, str] | None = None,
        call_id: str | None = None,
        principal: Any = None,
    ) -> None:
        self.id = call_id or uuid.uuid4().hex[:12]
        self.agent = agent
        self.peer = peer
        self.output = peer.output
        self.settings = settings
        self.query = dict(query or {})
        self.principal = principal
        self.status = "idle"
        self.in_call = False
        self.closed = False
        self.turn: Turn | None = None
        self._speculative: Turn | None = None  # started on an eager end of turn, not yet committed
        self.tts = agent.get_tts() if isinstance(agent, VoiceAgent) else None
        self.speech: SpeechInput | None = None  # the STT side, while a call is starting or on
        self._vad: VoiceActivityDetector | None = None  # our own barge-in VAD, for STT without speech events
        self._tasks: set[asyncio.Task] = set()
        self._messages = TokenBucket(settings.messages_per_second, settings.message_burst)
        self._audio = TokenBucket(settings.audio_realtime_factor, settings.audio_burst_seconds)
        self._refused = 0
        self._last_error: dict[str, float] = {}
        self.last_activity = time.monotonic()
        self.call_started_at: float | None = None
        agent._calls.add(self)
        self._spawn(self._watchdog())

    # --- to the client -------------------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        if not self.closed:
            self.peer.send_json(message)

    def send_json(self, message: dict[str, Any]) -> None:
        """Send the app's own JSON message to the client (the official client raises ``custommessage``). Its
        ``type`` must not be one the protocol uses."""
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ValueError("send_json needs a dict with a string 'type'")
        if message["type"] in protocol.SERVER_TYPES:
            raise ValueError(f"type {message['type']!r} belongs to the protocol; pick another")
        self.send(message)

    async def _app_message(self, message: dict[str, Any]) -> None:
        try:
            await maybe_await(self.agent.on_message(message, self))
        except Exception:  # noqa: BLE001 - the user's hook may raise anything
            log.exception("on_message failed on %s", self.id)

    def set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self.send(protocol.status(status))

    def send_error(self, message: str, code: str | None = None) -> None:
        """An ``error`` message, at most one per code per second so a flood cannot amplify itself."""
        now = time.monotonic()
        key = code or message
        if now - self._last_error.get(key, -10.0) >= 1.0:
            self._last_error[key] = now
            self.send(protocol.error(message, code))

    async def hangup(self) -> None:
        """End the call and close the connection (on a phone line this hangs up). Called from ``on_turn``, it
        happens once the reply being spoken has played out, so a goodbye is heard."""
        if self._inside_turn():
            turn = self.turn
            self._spawn(self._after(turn, self.hangup()))
            return
        await self.end_call(notify=False)
        await self.peer.close(protocol.CLOSE_NORMAL, "call ended by agent")

    def _inside_turn(self) -> bool:
        """Whether the caller is the current turn's own code (on_turn), which must not wait for itself."""
        return self.turn is not None and CURRENT_TURN.get() is self.turn

    async def _after(self, turn: Turn | None, action) -> None:
        if turn is not None:
            await turn.wait()
        await action

    # --- from the transport ---------------------------------------------------------------------------------

    async def handle_text(self, frame: str) -> None:
        """One JSON text frame from the client."""
        self.last_activity = time.monotonic()
        if len(frame) > self.settings.max_message_bytes:
            return await self._refuse(f"message larger than {self.settings.max_message_bytes} bytes", "too_large")
        if not self._messages.take(1.0):
            return await self._refuse("too many messages; slow down", "rate_limited")
        try:
            message = protocol.parse_client_message(frame, self.settings.max_text_chars)
        except protocol.ProtocolError as exc:
            return await self._refuse(str(exc), exc.code)
        await self.handle_message(message)

    async def handle_message(self, message: protocol.ClientMessage) -> None:
        kind = message.type
        if kind == "start_call":
            # in the background: audio that follows while the STT session starts is buffered, not blocked
            self._spawn(self.start_call())
        elif kind == "end_call":
            await self.end_call()
        elif kind == "interrupt":
            if self.turn is not None:
                await self.interrupt(notify_client=False)
        elif kind == "text_message":
            await self.text_message(message.text or "")
        elif kind == "playback_ack":
            self.peer.on_playback_ack(message.played_samples or 0)
        elif kind == "end_of_speech" and self.speech is not None:
            self._spawn(self.speech.commit())
        elif kind not in protocol.CLIENT_TYPES:
            if type(self.agent).on_message is BaseAgent.on_message:
                return await self._refuse(f"unknown message type {kind[:40]!r}", "unknown_type")
            self._spawn(self._app_message(message.raw or {}))
        # hello, start_of_speech: nothing to do (welcome is sent on connect; turn detection is the STT's)

    def handle_audio(self, pcm: bytes) -> None:
        """One binary frame: 16 kHz mono int16 PCM. Called for every frame, so it stays cheap."""
        self.last_activity = time.monotonic()
        speech = self.speech
        if speech is None:
            return  # audio outside a call is ignored, as in @cloudflare/voice
        size = len(pcm)
        if size > self.settings.max_frame_bytes:
            self._spawn(self._refuse(f"audio frame larger than {self.settings.max_frame_bytes} bytes", "too_large"))
            return
        if size & 1:
            self._spawn(self._refuse("audio frames must hold whole 16-bit samples (even length)", "odd_frame"))
            return
        if not self._audio.take(size / 32000):
            self._spawn(self._refuse("audio arrives faster than real time allows; dropped", "rate_limited"))
            return
        speech.feed(pcm)
        if self._vad is not None:
            self._barge_in_vad(pcm)

    async def close(self) -> None:
        """The transport is gone: clean up without sending anything."""
        if self.closed:
            return
        await self.end_call(notify=False)
        self.closed = True
        self.agent._calls.discard(self)
        others = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    # --- call lifecycle -------------------------------------------------------------------------------------

    async def start_call(self) -> None:
        if self.in_call or self.closed or self.speech is not None:
            return
        agent = self.agent
        # audio that follows start_call is buffered while the call is approved and the STT session opens
        speech = self.speech = SpeechInput(self._on_stt_event, self._stt_gave_up, self.settings.preconnect_audio_seconds)
        if not await maybe_await(agent.before_call_start(self)):
            self.speech = None
            self.send_error("the call was rejected", "call_rejected")
            self.send(protocol.status("idle"))
            return
        self.in_call = True
        self.send({"type": "audio_config", "format": "pcm16", "sampleRate": self.output.sample_rate})
        try:
            transcriber = agent.create_transcriber(self)
            await speech.open(transcriber)
        except Exception as exc:  # noqa: BLE001 - any provider failure ends the call attempt cleanly
            log.warning("STT failed to start on %s: %s", self.id, exc)
            self.in_call = False
            self.speech = None
            await speech.close()
            self.send_error(f"speech recognition failed to start: {type(exc).__name__}", "stt_failed")
            self.send(protocol.status("idle"))
            self.status = "idle"
            return
        if not self.in_call:  # ended while the session was starting
            return
        if not transcriber.emits_speech_start and isinstance(agent, VoiceAgent):
            self._vad = VoiceActivityDetector(VADConfig(start_ms=100))
        self.call_started_at = time.monotonic()
        self.set_status("listening")
        await maybe_await(agent.on_call_start(self))

    async def _stt_gave_up(self, reason: str) -> None:
        self.send_error(f"speech recognition failed: {reason}", "stt_error")
        await self.end_call()

    async def end_call(self, notify: bool = True) -> None:
        if not self.in_call:
            return
        self.in_call = False
        self._drop_speculative()
        if self.turn is not None:
            await self.interrupt(notify_client=False, hook=False)
        speech, self.speech = self.speech, None
        if speech is not None:
            await speech.close()
        if notify:
            self.set_status("idle")
        else:
            self.status = "idle"
        await maybe_await(self.agent.on_call_end(self))

    # --- turns ----------------------------------------------------------------------------------------------

    async def interrupt(self, notify_client: bool = True, hook: bool = True) -> None:
        """Stop the current reply: cancel it, flush audio, store what was heard, return to listening."""
        turn = self.turn
        if turn is None:
            return
        self.turn = None
        turn.cancel()
        was_audible = turn.audio_started
        if notify_client and was_audible:
            self.send({"type": "playback_interrupt"})
        heard_position = await self.output.clear() if was_audible else self.output.played()
        await turn.wait()
        await turn.save_interrupted(heard_position)
        if self.in_call:
            self.status = ""  # always say it: a client that stopped playback waits for it before taking audio again
            self.set_status("listening")
        if hook and isinstance(self.agent, VoiceAgent):
            await maybe_await(self.agent.on_interrupt(self))

    def turn_finished(self, turn: Turn) -> None:
        if self.turn is turn:
            self.turn = None

    async def text_message(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        await self._start_turn(text, source="text", metrics=TurnMetrics())

    async def speak(self, text: str, save: bool = True) -> None:
        """Speak fixed text (no on_turn); waits for a reply in progress to finish first."""
        if not isinstance(self.agent, VoiceAgent) or not text.strip():
            return
        if self._inside_turn():  # from on_turn: after the current reply, not waiting on ourselves
            self._spawn(self._after(self.turn, self.speak(text, save)))
            return
        if self.turn is not None:
            await self.turn.wait()
        turn = Turn(self, None, speak=self.in_call, source="speak", fixed_text=text, save=save)
        self.turn = turn.start()
        await turn.wait()

    async def _start_turn(self, text: str, source: str, metrics: TurnMetrics) -> None:
        if self.turn is not None:
            await self.interrupt()  # a newer utterance or message supersedes the reply in flight
        agent = self.agent
        self.send({"type": "transcript", "role": "user", "text": text})
        if isinstance(agent, VoiceInputAgent):
            await agent.add_message("user", text)
            await maybe_await(agent.on_transcript(text, self))
            return
        turn = Turn(self, text, speak=self.in_call, source=source, metrics=metrics)
        self.turn = turn.start()
        # stored after the turn took its history snapshot; the reply does not wait for the disk
        agent.add_message("user", text)

    def _on_stt_event(self, event: Any) -> None:
        if self.closed or not self.in_call:
            return
        if isinstance(event, Interim):
            self.send({"type": "transcript_interim", "text": event.text})
        elif isinstance(event, SpeechStarted):
            if self._can_barge_in():
                self._spawn(self.interrupt())
        elif isinstance(event, Final):
            if self.speech is not None:
                self.speech.final_seen()
            self._spawn(self._final(event))
        elif isinstance(event, EagerFinal):
            self._spawn(self._eager_final(event))
        elif isinstance(event, TurnResumed):
            self._drop_speculative()
        elif isinstance(event, TranscriberError):  # fatal ones are handled by SpeechInput
            self.send_error(f"speech recognition: {event.message}", "stt_error")

    async def _final(self, event: Final) -> None:
        metrics = TurnMetrics(speech_ended_at=event.speech_ended_at or time.monotonic(), final_at=time.monotonic())
        self.send({"type": "transcript_interim", "text": ""})
        text = await maybe_await(self.agent.after_transcribe(event.text.strip(), self))
        speculative, self._speculative = self._speculative, None
        if not text or not text.strip():
            if speculative:
                speculative.cancel()
            return
        text = text.strip()
        if speculative is not None:
            if _same_words(speculative.transcript or "", text):
                await self._commit(speculative, metrics, text)
                return
            speculative.cancel()  # the user said something else: answer what was finally said
        await self._start_turn(text, source="voice", metrics=metrics)

    async def _eager_final(self, event: EagerFinal) -> None:
        """Start answering before the end of turn is certain; nothing is sent until :meth:`_final` commits."""
        if not isinstance(self.agent, VoiceAgent):
            return
        text = await maybe_await(self.agent.after_transcribe(event.text.strip(), self))
        self._drop_speculative()
        if text and text.strip():
            self._speculative = Turn(self, text.strip(), speak=self.in_call, speculative=True, save=True).start()

    def _drop_speculative(self) -> None:
        speculative, self._speculative = self._speculative, None
        if speculative is not None:
            speculative.save = False
            speculative.cancel()

    async def _commit(self, turn: Turn, metrics: TurnMetrics, text: str) -> None:
        if self.turn is not None:
            await self.interrupt()
        self.send({"type": "transcript", "role": "user", "text": text})
        self.turn = turn
        turn.commit(metrics.speech_ended_at, metrics.final_at or time.monotonic())
        self.agent.add_message("user", text)

    def _can_barge_in(self) -> bool:
        turn = self.turn
        return turn is not None and (turn.audio_started or self.output.is_playing())

    def _barge_in_vad(self, pcm: bytes) -> None:
        vad = self._vad
        assert vad is not None
        if not self._can_barge_in():
            if vad.state.value != "quiet":
                vad.reset()
            return
        for event in vad.process(pcm):
            if event.kind == "start":
                self._spawn(self.interrupt())

    # --- helpers --------------------------------------------------------------------------------------------

    async def _refuse(self, message: str, code: str) -> None:
        self._refused += 1
        self.send_error(message, code)
        if self._refused >= self.settings.abuse_close_after:
            log.warning("closing %s: %d refused messages", self.id, self._refused)
            await self.close_connection(protocol.CLOSE_POLICY, "too many invalid or excess messages")

    async def _watchdog(self) -> None:
        """Ends calls that run too long and closes connections that went silent (a dead client)."""
        settings = self.settings
        while not self.closed:
            await asyncio.sleep(min(1.0, settings.idle_timeout_seconds / 4))
            now = time.monotonic()
            if now - self.last_activity > settings.idle_timeout_seconds:
                log.info("closing idle connection %s", self.id)
                self.send_error("no audio or messages for too long", "idle_timeout")
                self._spawn(self.close_connection(protocol.CLOSE_IDLE, "idle"))
                return
            started = self.call_started_at
            if self.in_call and started is not None and now - started > settings.max_call_seconds:
                self.send_error("the call reached its maximum duration", "call_too_long")
                self._spawn(self.end_call())

    async def close_connection(self, code: int, reason: str) -> None:
        """End everything on this connection and close it with ``code``."""
        await self.close()
        await self.peer.close(code, reason)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _same_words(a: str, b: str) -> bool:
    """Transcripts that differ only in case and punctuation say the same thing."""
    def words(text: str) -> list[str]:
        return "".join(ch.lower() if ch.isalnum() or ch.isspace() else " " for ch in text).split()

    return words(a) == words(b)

