"""The classes a developer subclasses: :class:`VoiceAgent` (a conversation) and :class:`VoiceInputAgent` (dictation),
and :class:`TurnContext`, what ``on_turn`` gets besides the transcript.

An agent object is one *instance*, addressed by (agent name, instance id). Every connection to that instance shares
its history and receives :meth:`VoiceAgent.speak_all`. Instances are created by the runtime, not by user code; this
module knows nothing of the engine: what an agent needs from the server it gets through :class:`AgentHost`, and what
it sees of a connection is :class:`CallHandle` (implemented by :class:`voice.Call`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .audio import AudioChunk
from .config import Settings
from .history import Message, Transcript
from .providers.base import Transcriber, TTSProvider
from .providers.turn import TurnDetector


class Flush:
    """The type of :data:`FLUSH`."""

    def __repr__(self) -> str:
        return "FLUSH"


#: Yield this from ``on_turn`` to have the text so far spoken now, without waiting for the sentence to end (e.g. "Let
#: me check" before a slow tool call).
FLUSH = Flush()

#: What ``on_turn`` may produce: text, None (silence), an async iterator of text (and :data:`FLUSH`), or an awaitable.
TurnOutput = str | None | AsyncIterator[str | Flush] | Awaitable[str | None]


class CallHandle(Protocol):
    """What an agent sees of one connection (a :class:`voice.Call`)."""

    #: the connection's id (the client's ``_pk`` when it sends one)
    id: str
    #: the connection's query parameters (credentials removed)
    query: dict[str, str]
    #: what the ``authorize`` hook returned for this connection
    principal: Any
    #: the wire: "websocket", "webrtc" or "twilio" (a phone call)
    transport: str

    @property
    def in_call(self) -> bool:
        """Whether a call is on (``start_call`` succeeded and it has not ended)."""

    async def speak(self, text: str, save: bool = True, *, interruptible: bool = True) -> None:
        """Say fixed text on this connection."""

    async def hangup(self) -> None:
        """End the call and close the connection."""

    def send_json(self, message: dict[str, Any]) -> None:
        """Send the app's own JSON message to the client."""

    def send_error(self, message: str, code: str | None = None) -> None:
        """Send an ``error`` message (docs/protocol.md) to the client."""


class AgentHost(Protocol):
    """What the runtime provides to the agents it creates."""

    settings: Settings

    def default_transcriber(self) -> Transcriber:
        """The server's speech-to-text."""

    def default_tts(self) -> TTSProvider:
        """The server's text-to-speech."""

    def default_turn_detector(self) -> TurnDetector | None:
        """The server's end-of-turn detector."""

    async def schedule(self, agent: str, instance: str, delay: float, method: str, payload: Any) -> str:
        """Store a durable schedule; returns its id."""

    async def cancel_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule that has not run."""

    async def speak_all(self, agent: BaseAgent, text: str) -> None:
        """Say ``text`` on every connection of ``agent``'s instance that is in a call (stored once)."""


@dataclass
class TurnContext:
    """What ``on_turn`` gets besides the transcript."""

    #: recent history before this turn, oldest first: ``{"role": "user"|"assistant"|..., "content": str}``, plus
    #: ``"meta"`` (a dict) on messages stored with one (e.g. tool calls)
    messages: list[dict[str, Any]]
    #: set when the turn is interrupted or superseded (the ``on_turn`` task is also cancelled)
    cancelled: asyncio.Event
    #: the connection this turn belongs to
    call: CallHandle
    #: "voice" (spoken), "text" (a text_message)
    source: str = "voice"
    #: monotonic time ``on_turn`` was called
    started_at: float = field(default_factory=time.monotonic)


class BaseAgent:
    """What both kinds of agent share: identity, providers, history, schedules, lifecycle hooks."""

    #: speech-to-text for this agent's calls; None: the server's default
    transcriber: Transcriber | None = None
    #: how many history messages ``ctx.messages`` holds; None: the server's ``history_limit`` (default 20)
    history_limit: int | None = None

    #: the registered agent name (set by the runtime)
    name: str
    #: which conversation this object is (set by the runtime)
    instance_id: str
    _host: AgentHost
    _transcript: Transcript

    def _bind(self, host: AgentHost, name: str, instance_id: str, transcript: Transcript) -> None:
        self._host = host
        self.name = name
        self.instance_id = instance_id
        self._transcript = transcript
        self._calls: set[CallHandle] = set()

    # --- lifecycle hooks (override as needed) ----------------------------------------------------------------

    async def before_call_start(self, call: CallHandle) -> bool:
        """Return False to reject the call (the client gets an ``error``)."""
        return True

    async def on_call_start(self, call: CallHandle) -> None:
        """The call is listening. A good place to greet: ``await self.speak(call, "Hi!")``."""

    async def on_call_end(self, call: CallHandle) -> None:
        """The call ended (after any in-flight turn finished or was cancelled)."""

    async def after_transcribe(self, text: str, call: CallHandle) -> str | None:
        """Rewrite or drop (None/"") a final transcript before it becomes a turn."""
        return text

    async def on_message(self, message: dict[str, Any], call: CallHandle) -> None:
        """A client JSON message whose ``type`` the protocol does not define: the app's own (the official client's
        ``sendJSON``). Answer with ``call.send_json(...)``. Unless this is overridden, such messages get an
        ``unknown_type`` error, so a misspelt type does not go unnoticed."""

    def create_transcriber(self, call: CallHandle) -> Transcriber:
        """Choose the STT for one connection, e.g. from ``call.query["model"]``. Default: the class's own."""
        return self.transcriber or self._host.default_transcriber()

    # --- history ----------------------------------------------------------------------------------------------

    @property
    def calls(self) -> list[CallHandle]:
        """Connections to this instance that are in a call."""
        return [c for c in self._calls if c.in_call]

    async def messages(self, limit: int | None = None) -> list[Message]:
        """Stored history of this instance, oldest first."""
        await self._transcript.flush()
        return await self._transcript.store.messages(self.name, self.instance_id, limit)

    def recent_messages(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The last ``limit`` messages (default: ``history_limit``) as ``ctx.messages`` shows them."""
        n = limit if limit is not None else self.history_limit or self._host.settings.history_limit
        return [
            {"role": m.role, "content": m.content} | ({"meta": m.meta} if m.meta else {})
            for m in self._transcript.recent(n)
        ]

    def add_message(
        self, role: str, content: str, interrupted: bool = False, meta: dict[str, Any] | None = None
    ) -> asyncio.Future[Message]:
        """Append to history: in memory at once, in the store in order. The write is queued before this returns, so
        it is not lost if the caller is cancelled; await the result to be sure it is stored."""
        return self._transcript.add(role, content, interrupted=interrupted, meta=meta)

    # --- schedules --------------------------------------------------------------------------------------------

    async def schedule(self, delay_seconds: float, method_name: str, payload: Any = None) -> str:
        """Call ``method_name(payload)`` on this instance after ``delay_seconds``, even across restarts.
        Returns an id for :meth:`cancel_schedule`."""
        if not callable(getattr(self, method_name, None)):
            raise AttributeError(f"{type(self).__name__} has no method {method_name!r}")
        return await self._host.schedule(self.name, self.instance_id, delay_seconds, method_name, payload)

    async def cancel_schedule(self, schedule_id: str) -> bool:
        """Cancel a schedule made by :meth:`schedule`; False if it already ran or never existed."""
        return await self._host.cancel_schedule(schedule_id)


class VoiceAgent(BaseAgent):
    """A conversational agent. Override :meth:`on_turn`; everything else has sensible defaults."""

    #: text-to-speech for this agent's calls; None: the server's default
    tts: TTSProvider | None = None
    #: whether the user may interrupt the agent's replies by speaking (``speak(..., interruptible=...)`` overrides)
    allow_interruptions: bool = True
    #: how the end of a user's turn is judged; None: the server's default
    turn_detector: TurnDetector | None = None

    async def on_turn(self, transcript: str, ctx: TurnContext) -> TurnOutput:
        """Answer one user turn: return a str (or None for silence), return an async iterator of str, or be an
        async generator (``yield`` text as it is produced). Streamed text is spoken sentence by sentence.
        ``create_app`` refuses a VoiceAgent subclass that does not override it."""
        return None

    async def on_interrupt(self, call: CallHandle) -> None:
        """The user interrupted the agent (barge-in or an ``interrupt`` message)."""

    async def before_synthesize(self, text: str, call: CallHandle) -> str | None:
        """Rewrite or skip (None/"") one sentence before it is spoken."""
        return text

    async def after_synthesize(self, audio: AudioChunk, text: str, call: CallHandle) -> AudioChunk | None:
        """Inspect, replace or drop (None) synthesized audio before it is sent."""
        return audio

    def get_tts(self) -> TTSProvider:
        """The text-to-speech for this agent's calls."""
        return self.tts or self._host.default_tts()

    def get_turn_detector(self) -> TurnDetector | None:
        """The end-of-turn detector for this agent's calls."""
        return self.turn_detector or self._host.default_turn_detector()

    async def on_user_idle(self, call: CallHandle, idle_seconds: float) -> None:
        """The user has said nothing for ``idle_seconds`` since the agent last finished speaking (needs
        ``VOICE_USER_IDLE_SECONDS``; called again each further period). E.g. ask "Are you still there?", and hang
        up when it happens twice."""

    async def speak(self, call: CallHandle, text: str, *, interruptible: bool = True) -> None:
        """Say ``text`` on one connection (saved to history as an assistant message). ``interruptible=False``: the
        user cannot talk over it (disclaimers, consent prompts)."""
        await call.speak(text, interruptible=interruptible)

    async def speak_all(self, text: str) -> None:
        """Say ``text`` on every connection of this instance that is in a call. With none, it is only stored."""
        await self._host.speak_all(self, text)

    async def on_dtmf(self, digit: str, call: CallHandle) -> None:
        """A keypad digit on a phone call. Default: ignored."""


class VoiceInputAgent(BaseAgent):
    """Dictation only: transcripts go to :meth:`on_transcript` and to the client; nothing is spoken."""

    async def on_transcript(self, text: str, call: CallHandle) -> None:
        """A final transcript. Default: nothing (it is already stored and sent to the client)."""
