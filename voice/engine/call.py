"""One connection's call: its lifecycle as a state machine, and the glue between speech input, turn-taking and replies.

A transport creates a :class:`Call` with a :class:`Peer` (how to send JSON to the client, where audio goes), then
hands it client messages (:meth:`Call.handle`), 16 kHz PCM (:meth:`Call.feed_audio`) and finally :meth:`Call.close`.
Everything that decides (who has the floor) is :class:`~voice.engine.turn_taking.TurnTaking`; the call feeds it one
event at a time, in order, from a single worker task, and carries out what it returns through its
:class:`~voice.engine.floor.Floor`. The call never touches sockets.

Its lifecycle is :class:`~voice.engine.call_state.CallState`: every change goes through that module's table.
The status a client sees (idle, listening, thinking, speaking) is derived from the lifecycle and the floor.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from abc import ABC, abstractmethod
from typing import Any

from .. import protocol
from .._aio import TaskSet, maybe_await
from ..agent import BaseAgent, VoiceAgent, VoiceInputAgent
from ..config import Settings
from ..history import Transcript
from ..providers.base import (
    EagerFinal,
    Final,
    Interim,
    SpeechStarted,
    SpeechStopped,
    TranscriberError,
    TranscriberEvent,
    TurnResumed,
)
from ..reply import AudioOutput, Reply, current_reply
from .call_state import TRANSITIONS, CallState
from .floor import Floor
from .speech_input import BargeInVAD, SpeechInput
from .turn_events import (
    CallEnded,
    CallStarted,
    ClientInterrupt,
    EarlyTranscript,
    Event,
    FinalTranscript,
    InterimTranscript,
    ReplyPhase,
    SpeakRequest,
    Tick,
    TypedMessage,
    UserResumed,
    UserSpeechStarted,
    UserSpeechStopped,
)
from .turn_policy import TurnPolicy
from .turn_taking import TurnTaking

log = logging.getLogger("voice.call")


class Peer(ABC):
    """The transport side of a call."""

    output: AudioOutput
    #: which wire: "websocket", "webrtc", "twilio", ...
    transport: str = "websocket"

    @abstractmethod
    def send_json(self, message: dict[str, Any]) -> None:
        """Queue a JSON message to the client (never blocks)."""

    @abstractmethod
    async def close(self, code: int = protocol.CLOSE_NORMAL, reason: str = "") -> None:
        """Close the connection (for a phone call: hang up)."""


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
        self.transport = peer.transport
        self.transcript: Transcript = agent._transcript
        self.tts = agent.get_tts() if isinstance(agent, VoiceAgent) else None
        self.state = CallState.IDLE
        self.started_at: float | None = None  # monotonic time the call became active
        self.speech: SpeechInput | None = None  # the STT side, while a call is starting or on
        self._vad: BargeInVAD | None = None  # our own barge-in detector, for STT without speech starts
        allow = agent.allow_interruptions if isinstance(agent, VoiceAgent) else True
        self.language = self.query.get("language") or "en"
        self.turns = TurnTaking(TurnPolicy.from_settings(settings, self.language), allow_interruptions=allow)
        self.detector = agent.get_turn_detector() if isinstance(agent, VoiceAgent) else None
        self._tick: asyncio.TimerHandle | None = None
        self._interim_shown = False  # an interim transcript is on the client's screen: a final clears it
        self._events: asyncio.Queue[tuple[Event | TranscriberEvent, asyncio.Future[None] | None]] = asyncio.Queue()
        self.floor = Floor(self, self.turns, self._post)
        self._status = "idle"  # last status sent
        self._last_error: dict[str, float] = {}
        self._tasks = TaskSet(f"call {self.id}")
        self._worker = self._tasks.spawn(self._process(), name=f"call-{self.id}")
        agent._calls.add(self)

    # --- state ----------------------------------------------------------------------------------------------

    def _enter(self, state: CallState) -> None:
        if state is not self.state and state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"call {self.id}: no transition {self.state.name} → {state.name}")
        self.state = state

    @property
    def in_call(self) -> bool:
        """Whether a call is on."""
        return self.state is CallState.ACTIVE

    @property
    def closed(self) -> bool:
        """Whether the connection is gone."""
        return self.state is CallState.CLOSED

    @property
    def turn(self) -> Reply | None:
        """The reply that has the floor now (None while the user has it)."""
        floor = self.turns.floor
        return self.floor.replies.get(floor.reply) if floor is not None else None

    @property
    def status(self) -> str:
        """What the client is told: idle, listening, thinking or speaking."""
        status = self.turns.status
        if self.state is CallState.ACTIVE:
            return status
        return "thinking" if status == "thinking" else "idle"

    def _publish_status(self, force: bool = False) -> None:
        status = self.status
        if force or status != self._status:
            self._status = status
            self.send(protocol.status(status))

    # --- to the client --------------------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """A protocol message to the client (dropped once the connection is gone)."""
        if not self.closed:
            self.peer.send_json(message)

    def send_error(self, message: str, code: str | None = None) -> None:
        """An ``error`` message, at most one per code per second so a flood cannot amplify itself."""
        now = time.monotonic()
        key = code or message
        if now - self._last_error.get(key, -10.0) >= 1.0:
            self._last_error[key] = now
            self.send(protocol.error(message, code))

    def send_json(self, message: dict[str, Any]) -> None:
        """Send the app's own JSON message to the client (the official client raises ``custommessage``). Its
        ``type`` must not be one the protocol uses."""
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ValueError("send_json needs a dict with a string 'type'")
        if message["type"] in protocol.SERVER_TYPES:
            raise ValueError(f"type {message['type']!r} belongs to the protocol; pick another")
        self.send(message)

    # --- from the transport ---------------------------------------------------------------------------------

    async def handle(self, message: protocol.ClientMessage) -> None:
        """One valid client message (the transport parsed it and applied the limits)."""
        kind = message.type
        if kind == "start_call":
            self.start()
        elif kind == "end_call":
            await self.end()
        elif kind == "interrupt":
            self._post(ClientInterrupt())
        elif kind == "text_message":
            if (message.text or "").strip():
                self._post(TypedMessage(message.text or "", time.monotonic()))
        elif kind == "end_of_speech" and self.speech is not None:
            self._tasks.spawn(self.speech.commit())
        # hello, start_of_speech: nothing to do (welcome is sent on connect; turn detection is the STT's)

    def takes_app_messages(self) -> bool:
        """Whether the agent handles the app's own messages (overrides ``on_message``)."""
        return type(self.agent).on_message is not BaseAgent.on_message

    def app_message(self, message: dict[str, Any]) -> None:
        """A client message of the app's own type, for the agent's ``on_message``."""
        self._tasks.spawn(self._hook("on_message", self.agent.on_message(message, self)))

    def feed_audio(self, pcm: bytes) -> None:
        """One frame of 16 kHz mono int16 PCM (validated by the transport). Called for every frame: stays cheap."""
        speech = self.speech
        if speech is None:
            return  # audio outside a call is ignored, as in @cloudflare/voice
        speech.feed(pcm)
        if self._vad is not None:
            for kind in self._vad.process(pcm, armed=self.turns.can_barge_in()):
                now = time.monotonic()
                self._post(UserSpeechStarted(now) if kind == "start" else UserSpeechStopped(now))

    def dtmf(self, digit: str) -> None:
        """A keypad digit (phone calls): for the agent's ``on_dtmf``."""
        if isinstance(self.agent, VoiceAgent):
            self._tasks.spawn(self._hook("on_dtmf", self.agent.on_dtmf(digit, self)))

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """``start_call``: from now on audio is buffered while the call is approved and the STT session opens."""
        if self.state is not CallState.IDLE:
            return
        self._enter(CallState.STARTING)
        self.speech = SpeechInput(self._on_stt_event, self._stt_gave_up, self.settings.preconnect_audio_seconds)
        self._tasks.spawn(self._open(self.speech), name=f"call-{self.id}-start")

    async def _open(self, speech: SpeechInput) -> None:
        agent = self.agent
        if not await maybe_await(agent.before_call_start(self)):
            return await self._abort(speech, "the call was rejected", "call_rejected")
        self.send({"type": "audio_config", "format": "pcm16", "sampleRate": self.output.sample_rate})
        self.output.begin_stream()
        try:
            transcriber = agent.create_transcriber(self)
            self.language = str(self.query.get("language") or getattr(transcriber, "language", "en"))
            self.turns.policy = TurnPolicy.from_settings(self.settings, self.language)
            self.turns.endpointing = transcriber.engine_endpointing and isinstance(agent, VoiceAgent)
            max_silence = int(self.turns.policy.endpoint_max * 1000) + 100 if self.turns.endpointing else None
            await speech.open(transcriber, self.language, max_silence)
        except Exception as exc:  # noqa: BLE001 - any provider failure ends the call attempt cleanly
            log.warning("STT failed to start on %s: %s", self.id, exc)
            return await self._abort(speech, f"speech recognition failed to start: {type(exc).__name__}",
                                     "stt_failed")
        if self.state is not CallState.STARTING or self.speech is not speech:
            return  # ended while the session was starting
        if not transcriber.emits_speech_start and isinstance(agent, VoiceAgent):
            self._vad = BargeInVAD()
        self.started_at = time.monotonic()
        self._enter(CallState.ACTIVE)
        self._post(CallStarted(self.started_at))
        self._publish_status()
        await maybe_await(agent.on_call_start(self))

    async def _abort(self, speech: SpeechInput, message: str, code: str) -> None:
        if self.speech is speech:
            self.speech = None
            self._enter(CallState.IDLE)
        await speech.close()
        self.send_error(message, code)
        self._publish_status(force=True)

    async def _stt_gave_up(self, reason: str) -> None:
        self.send_error(f"speech recognition failed: {reason}", "stt_error")
        await self.end()

    async def end(self, notify: bool = True) -> None:
        """End the call (the connection stays): the reply in flight stops, the STT session closes."""
        if self.state not in (CallState.STARTING, CallState.ACTIVE):
            return
        self._enter(CallState.IDLE)
        self._vad = None
        if not notify:
            self._status = "idle"  # said silently: the connection is going away
        await self._submit(CallEnded())
        speech, self.speech = self.speech, None
        if speech is not None:
            await speech.close()
        self._publish_status()
        await self._hook("on_call_end", self.agent.on_call_end(self))

    async def close(self) -> None:
        """The transport is gone: clean up without sending anything."""
        if self.closed:
            return
        await self.end(notify=False)
        self._enter(CallState.CLOSED)
        self.agent._calls.discard(self)
        if self._tick is not None:
            self._tick.cancel()
        if not self._in_worker():
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        while not self._events.empty():  # nobody will deal with these: release their waiters
            _, done = self._events.get_nowait()
            if done is not None and not done.done():
                done.set_result(None)
        await self.floor.run(self.turns.close())
        await self.floor.close()
        await self._tasks.cancel_all()

    async def close_connection(self, code: int, reason: str) -> None:
        """End everything on this connection and close it with ``code``."""
        await self.close()
        await self.peer.close(code, reason)

    async def hangup(self) -> None:
        """End the call and close the connection (on a phone line this hangs up). Called from ``on_turn``, it
        happens once the reply being spoken has played out, so a goodbye is heard."""
        reply = self._own_reply()
        if reply is not None or self._in_worker():
            self._tasks.spawn(self._after(reply, self.hangup()))
            return
        await self.end(notify=False)
        await self.peer.close(protocol.CLOSE_NORMAL, "call ended by agent")

    async def speak(self, text: str, save: bool = True, *, interruptible: bool = True) -> None:
        """Say fixed text (no ``on_turn``) once the floor is free; returns when it has been heard. From inside
        ``on_turn`` it is queued after the current reply and returns at once."""
        if not isinstance(self.agent, VoiceAgent) or not text.strip() or self.closed:
            return
        token, said = self.floor.new_speech()
        self._post(SpeakRequest(text, token, save, interruptible))
        if self._own_reply() is None and not self._in_worker():
            await said

    def _own_reply(self) -> Reply | None:
        """The reply of this call whose code is running now (``on_turn``), which must not wait for itself."""
        reply = current_reply()
        if reply is None or reply.host is not self or reply.task is None or reply.task.done():
            return None
        return reply

    def _in_worker(self) -> bool:
        return asyncio.current_task() is self._worker

    async def _after(self, reply: Reply | None, action: Any) -> None:
        if reply is not None:
            await reply.wait()
        await action

    # --- the event worker: one event at a time, in order ----------------------------------------------------

    def _post(self, event: Event | TranscriberEvent) -> None:
        self._events.put_nowait((event, None))

    async def _submit(self, event: Event) -> None:
        """Post ``event`` and wait until it has been dealt with (or do it now, from the worker itself)."""
        if self._in_worker():
            await self.floor.run(self.turns.receive(event))
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._events.put_nowait((event, done))
        await done

    async def _process(self) -> None:
        while True:
            event, done = await self._events.get()
            try:
                decided = await self._decide(event)
                if decided is not None:
                    await self.floor.run(self.turns.receive(decided))
                    self._publish_status()
                    self._arm_tick()
            except Exception:
                log.exception("call %s: handling %s failed", self.id, type(event).__name__)
            finally:
                if done is not None and not done.done():
                    done.set_result(None)

    async def _decide(self, event: Event | TranscriberEvent) -> Event | None:
        """Provider events become turn-taking events (after the ``after_transcribe`` hook)."""
        if isinstance(event, SpeechStarted):
            return UserSpeechStarted(event.at) if self.in_call else None
        if isinstance(event, SpeechStopped):
            return UserSpeechStopped(event.at) if self.in_call else None
        if isinstance(event, Interim):
            return InterimTranscript(event.text, time.monotonic()) if self.in_call else None
        if isinstance(event, TurnResumed):
            return UserResumed(event.at)
        if isinstance(event, EagerFinal):
            if not isinstance(self.agent, VoiceAgent) or not self.in_call:
                return None
            text = await self._rewrite(event.text)
            score = await self._score(text, event.confidence)
            return EarlyTranscript(text, event.speech_ended_at, time.monotonic(), score)
        if isinstance(event, Final):
            final_at = time.monotonic()
            if self._interim_shown:
                self._interim_shown = False
                self.send({"type": "transcript_interim", "text": ""})
            text = await self._rewrite(event.text)
            if isinstance(self.agent, VoiceInputAgent):
                await self._dictated(text)
                return None
            return FinalTranscript(text, event.speech_ended_at or final_at, final_at) if self.in_call else None
        if isinstance(event, TypedMessage) and isinstance(self.agent, VoiceInputAgent):
            await self._dictated(event.text)
            return None
        return event  # type: ignore[return-value]  # already a turn-taking event

    async def _score(self, text: str, confidence: float | None) -> float | None:
        """How complete the turn sounds (the turn detector), when the engine decides the end of turn."""
        if not self.turns.endpointing or self.detector is None or not text or self.speech is None:
            return None
        try:
            return await self.detector.complete(text, self.speech.recent_audio(), confidence)
        except Exception:
            log.exception("turn detector failed on %s", self.id)
            return None

    def _arm_tick(self) -> None:
        """Wake the turn-taking at its next deadline."""
        deadline = self.turns.deadline
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        if deadline is not None and not self.closed:
            delay = max(0.0, deadline - time.monotonic())
            self._tick = asyncio.get_running_loop().call_later(delay, lambda: self._post(Tick(time.monotonic())))

    async def _rewrite(self, text: str) -> str:
        return ((await maybe_await(self.agent.after_transcribe(text.strip(), self))) or "").strip()

    async def _dictated(self, text: str) -> None:
        """Dictation: the transcript is shown, stored and handed to ``on_transcript``; nothing is answered."""
        text = text.strip()
        if not text:
            return
        self.send({"type": "transcript", "role": "user", "text": text})
        await self.transcript.user_turn(text)
        assert isinstance(self.agent, VoiceInputAgent)
        await maybe_await(self.agent.on_transcript(text, self))

    def _on_stt_event(self, event: TranscriberEvent) -> None:
        """From the STT session (on the event loop): interims are shown at once, the rest goes to the worker."""
        if self.closed or self.state is CallState.IDLE:
            return
        if isinstance(event, Interim) and self.in_call:
            self.send({"type": "transcript_interim", "text": event.text})
            self._interim_shown = bool(event.text)
        if isinstance(event, TranscriberError):  # fatal ones are handled by SpeechInput
            self.send_error(f"speech recognition: {event.message}", "stt_error")
        else:
            if isinstance(event, Final) and self.speech is not None:
                self.speech.final_seen()
            self._post(event)

    # --- from the floor -------------------------------------------------------------------------------------

    def reply_phase(self, reply: Reply, phase: str) -> None:
        """A reply reached a phase: the floor's state and the client's status follow at once (before its audio)."""
        for reply_id, running in self.floor.replies.items():
            if running is reply:
                self.turns.receive(ReplyPhase(reply_id, phase))
        self._publish_status()

    def finish_utterance(self) -> None:
        """The turn is over: the STT finishes the utterance now (its final transcript follows)."""
        if self.speech is not None:
            log.debug("call %s: end of turn", self.id)
            self._tasks.spawn(self.speech.commit(), name=f"call-{self.id}-commit")

    def user_idle(self, seconds: float, count: int) -> None:
        """The user has been silent for ``seconds``: the agent's ``on_user_idle``."""
        if isinstance(self.agent, VoiceAgent) and self.in_call:
            self._tasks.spawn(self._hook("on_user_idle", self.agent.on_user_idle(self, seconds)))

    def reply_interrupted(self) -> None:
        """A reply was cut: say the status again (a client that stopped playback waits for it)."""
        if self.in_call:  # "listening" whatever comes next: a client that stopped playback waits for it
            self._status = "listening"
            self.send(protocol.status("listening"))

    async def _hook(self, name: str, result: Any) -> None:
        try:
            await maybe_await(result)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed on %s", name, self.id)
