"""The classes a developer subclasses: :class:`VoiceAgent` (a conversation) and :class:`VoiceInputAgent` (dictation).

An agent object is one *instance*, addressed by (agent name, instance id). Every connection to that instance shares
its history and receives :meth:`VoiceAgent.speak_all`. Instances are created by the runtime, not by user code.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .audio import AudioChunk
from .providers.base import Transcriber, TTSProvider
from .storage import Message

if TYPE_CHECKING:
    from .call import Call
    from .runtime import Runtime

class Flush:
    """The type of :data:`FLUSH`."""

    def __repr__(self) -> str:
        return "FLUSH"


#: Yield this from ``on_turn`` to have the text so far spoken now, without waiting for the sentence to end (e.g. "Let
#: me check" before a slow tool call).
FLUSH = Flush()

TurnOutput = str | None | AsyncIterator[str | Flush] | Awaitable[str | None]


@dataclass
class TurnContext:
    """What ``on_turn`` gets besides the transcript."""

    #: recent history before this turn, oldest first: ``{"role": "user"|"assistant"|..., "content": str}``, plus
    #: ``"meta"`` (a dict) on messages stored with one (e.g. tool calls)
    messages: list[dict[str, Any]]
    #: set when the turn is interrupted or superseded (the ``on_turn`` task is also cancelled)
    cancelled: asyncio.Event
    #: the connection this turn belongs to
    call: Call
    #: "voice" (spoken), "text" (a text_message)
    source: str = "voice"
    started_at: float = field(default_factory=time.monotonic)


class BaseAgent:
    """What both kinds of agent share: identity, providers, history, schedules, lifecycle hooks."""

    #: speech-to-text for this agent's calls; None: the server's default
    transcriber: Transcriber | None = None
    #: how many history messages ``ctx.messages`` holds; None: the server's ``history_limit`` (default 20)
    history_limit: int | None = None

    name: str
    instance_id: str
    _runtime: Runtime

    def _bind(self, runtime: Runtime, name: str, instance_id: str, history: list[Message]) -> None:
        self._runtime = runtime
        self.name = name
        self.instance_id = instance_id
        self._history = history  # recent messages, oldest first; the store holds all of them
        self._calls: set[Call] = set()

    # --- lifecycle hooks (override as needed) ----------------------------------------------------------------

    async def before_call_start(self, call: Call) -> bool:
        """Return False to reject the call (the client gets an ``error``)."""
        return True

    async def on_call_start(self, call: Call) -> None:
        """The call is listening. A good place to greet: ``await self.speak(call, "Hi!")``."""

    async def on_call_end(self, call: Call) -> None:
        """The call ended (after any in-flight turn finished or was cancelled)."""

    async def after_transcribe(self, text: str, call: Call) -> str | None:
        """Rewrite or drop (None/"") a final transcript before it becomes a turn."""
        return text

    async def on_message(self, message: dict[str, Any], call: Call) -> None:
        """A client JSON message whose ``type`` the protocol does not define: the app's own (the official client's
        ``sendJSON``). Answer with ``call.send_json(...)``. Unless this is overridden, such messages get an
        ``unknown_type`` error, so a misspelt type does not go unnoticed."""

    def create_transcriber(self, call: Call) -> Transcriber:
        """Choose the STT for one connection, e.g. from ``call.query["model"]``. Default: the class's own."""
        return self.transcriber or self._runtime.default_transcriber()

    # --- history ----------------------------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """Connections to this instance that are in a call."""
        return [c for c in self._calls if c.in_call]

    async def messages(self, limit: int | None = None) -> list[Message]:
        """Stored history of this instance, oldest first."""
        return await self._runtime.store.messages(self.name, self.instance_id, limit)

    def recent_messages(self, limit: int | None = None) -> list[dict[str, Any]]:
        n = limit if limit is not None else self.history_limit or self._runtime.settings.history_limit
        recent = self._history[-n:] if n > 0 else []
        return [{"role": m.role, "content": m.content} | ({"meta": m.meta} if m.meta else {}) for m in recent]

    def add_message(
        self, role: str, content: str, interrupted: bool = False, meta: dict[str, Any] | None = None
    ) -> asyncio.Future[Message]:
        """Append to history: in memory at once, in SQLite in the background. The write is queued before this
        returns, so it keeps its order and is not lost if the caller is cancelled; await the result to be sure it
        is on disk."""
        message = Message(role, content, interrupted, time.time(), meta=meta)
        self._history.append(message)
        settings = self._runtime.settings
        del self._history[: -max(settings.history_cache, settings.history_limit, self.history_limit or 0)]
        return self._runtime.store.add_message(self.name, self.instance_id, message)

    # --- schedules --------------------------------------------------------------------------------------------

    async def schedule(self, delay_seconds: float, method_name: str, payload: Any = None) -> str:
        """Call ``method_name(payload)`` on this instance after ``delay_seconds``, even across restarts.
        Returns an id for :meth:`cancel_schedule`."""
        if not callable(getattr(self, method_name, None)):
            raise AttributeError(f"{type(self).__name__} has no method {method_name!r}")
        return await self._runtime.scheduler.add(self.name, self.instance_id, delay_seconds, method_name, payload)

    async def cancel_schedule(self, schedule_id: str) -> bool:
        return await self._runtime.scheduler.cancel(schedule_id)


class VoiceAgent(BaseAgent):
    """A conversational agent. Override :meth:`on_turn`; everything else has sensible defaults."""

    #: text-to-speech for this agent's calls; None: the server's default
    tts: TTSProvider | None = None

    async def on_turn(self, transcript: str, ctx: TurnContext) -> TurnOutput:  # type: ignore[override]
        """Answer one user turn: return a str (or None for silence), return an async iterator of str, or be an
        async generator (``yield`` text as it is produced). Streamed text is spoken sentence by sentence.
        ``create_app`` refuses a VoiceAgent subclass that does not override it."""
        return None

    async def on_interrupt(self, call: Call) -> None:
        """The user interrupted the agent (barge-in or an ``interrupt`` message)."""

    async def before_synthesize(self, text: str, call: Call) -> str | None:
        """Rewrite or skip (None/"") one sentence before it is spoken."""
        return text

    async def after_synthesize(self, audio: AudioChunk, text: str, call: Call) -> AudioChunk | None:
        """Inspect, replace or drop (None) synthesized audio before it is sent."""
        return audio

    def get_tts(self) -> TTSProvider:
        return self.tts or self._runtime.default_tts()

    async def speak(self, call: Call, text: str) -> None:
        """Say ``text`` on one connection (saved to history as an assistant message)."""
        await call.speak(text)

    async def speak_all(self, text: str) -> None:
        """Say ``text`` on every connection of this instance that is in a call. With none, it is only stored."""
        calls = self.calls
        if not calls:
            await self.add_message("assistant", text)
            return
        await asyncio.gather(*(c.speak(text, save=(i == 0)) for i, c in enumerate(calls)))

    async def on_dtmf(self, digit: str, call: Call) -> None:
        """A keypad digit on a phone call. Default: ignored."""


class VoiceInputAgent(BaseAgent):
    """Dictation only: transcripts go to :meth:`on_transcript` and to the client; nothing is spoken."""

    async def on_transcript(self, text: str, call: Call) -> None:
        """A final transcript. Default: nothing (it is already stored and sent to the client)."""


async def maybe_await(value: Any) -> Any:
    """Hooks may be sync or async."""
    return await value if inspect.isawaitable(value) else value
