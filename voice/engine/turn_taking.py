"""Turn-taking, sans I/O: who has the floor, decided from events, returned as actions.

:class:`TurnTaking` is a pure state machine in the manner of the ``websockets`` library's sans-I/O ``Protocol``: the
call feeds it what happened (:meth:`TurnTaking.receive` with an event: the user started speaking, a transcript, a
typed message, a reply reached a phase…) and gets back the decisions to carry out, in order (start a reply, hold one
speculatively, release it, drop it, interrupt the one playing). It never awaits, never reads a clock or a socket, so
every decision can be tested with plain values.

Reply ids are chosen here; the call maps them to the replies it runs and reports their phases back.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

# --- events: what happened ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserSpeechStarted:
    """The user started speaking (the STT's speech start, or our own VAD's)."""


@dataclass(frozen=True)
class EarlyTranscript:
    """A speculative end of turn: the user has probably finished saying ``text`` ("" after a hook dropped it)."""

    text: str
    speech_ended_at: float | None = None


@dataclass(frozen=True)
class UserResumed:
    """The user went on talking after an :class:`EarlyTranscript`: that guess was wrong."""


@dataclass(frozen=True)
class FinalTranscript:
    """The user's turn is over; ``text`` is what they said ("" after a hook dropped it)."""

    text: str
    speech_ended_at: float | None = None
    at: float = 0.0


@dataclass(frozen=True)
class TypedMessage:
    """A typed turn (``text_message``)."""

    text: str


@dataclass(frozen=True)
class ClientInterrupt:
    """The client stopped playback itself and says so (``interrupt``)."""


@dataclass(frozen=True)
class SpeakRequest:
    """The agent wants to say fixed text (``speak``). ``token`` identifies the request to its waiter."""

    text: str
    token: int
    save: bool = True
    interruptible: bool = True


@dataclass(frozen=True)
class ReplyPhase:
    """A reply reached a phase: "speaking" (its first audio is out) or "sent" (all of it is)."""

    reply: int
    phase: str


@dataclass(frozen=True)
class ReplyEnded:
    """A reply's task ended (played out, failed, or cut)."""

    reply: int


@dataclass(frozen=True)
class CallEnded:
    """The call is over: nothing may go on."""


Event = (
    UserSpeechStarted | EarlyTranscript | UserResumed | FinalTranscript | TypedMessage | ClientInterrupt
    | SpeakRequest | ReplyPhase | ReplyEnded | CallEnded
)

# --- actions: what to do ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartReply:
    """Answer ``text`` with a new reply (``held``: speculatively, sending nothing until released). Unless held, the
    user's turn is shown to the client and stored first."""

    reply: int
    text: str
    source: str = "voice"
    held: bool = False
    speech_ended_at: float | None = None
    final_at: float | None = None


@dataclass(frozen=True)
class ReleaseReply:
    """The held reply answers the final turn ``text``: show and store the turn, then let the reply send."""

    reply: int
    text: str
    speech_ended_at: float | None = None
    final_at: float | None = None


@dataclass(frozen=True)
class DropReply:
    """A held reply that will not be used: cancel it silently, store nothing."""

    reply: int


@dataclass(frozen=True)
class Interrupt:
    """Cut the reply that has the floor: cancel it, stop its audio, store what was heard. ``notify``: tell the
    client (``playback_interrupt``) if it was audible; ``hook``: run ``on_interrupt``."""

    reply: int
    notify: bool = True
    hook: bool = True


@dataclass(frozen=True)
class StartSpeech:
    """Say the fixed text of speak request ``token`` as reply ``reply``."""

    reply: int
    token: int
    text: str
    save: bool = True
    interruptible: bool = True


@dataclass(frozen=True)
class CancelSpeech:
    """Speak request ``token`` will never be said (the call ended first)."""

    token: int


Action = StartReply | ReleaseReply | DropReply | Interrupt | StartSpeech | CancelSpeech


class Phase(Enum):
    """How far the reply that has the floor has got."""

    THINKING = "thinking"  # producing; nothing audible yet
    SPEAKING = "speaking"  # its audio is going out
    SENT = "sent"  # all of its audio is out; the listener may still be hearing it


@dataclass
class _Floor:
    reply: int
    interruptible: bool = True
    phase: Phase = Phase.THINKING
    quiet: bool = False  # fixed text (speak): the client is not told "thinking"


@dataclass
class _Held:
    reply: int
    text: str


def same_words(a: str, b: str) -> bool:
    """Transcripts that differ only in case and punctuation say the same thing."""
    def words(text: str) -> list[str]:
        return "".join(ch.lower() if ch.isalnum() or ch.isspace() else " " for ch in text).split()

    return words(a) == words(b)


@dataclass
class TurnTaking:
    """Who has the floor. ``floor`` is the reply being produced or heard; ``held`` a speculative one."""

    #: whether the user may talk over the agent's replies at all (the agent's ``allow_interruptions``)
    allow_interruptions: bool = True
    floor: _Floor | None = None
    held: _Held | None = None
    _speeches: deque[SpeakRequest] = field(default_factory=deque)  # waiting for the floor
    _waiting: deque[FinalTranscript | TypedMessage] = field(default_factory=deque)  # turns behind a firm reply
    _next_id: int = 0

    # --- queries --------------------------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """The status a client sees while in a call: listening, thinking or speaking."""
        floor = self.floor
        if floor is None or floor.phase is Phase.SENT or (floor.quiet and floor.phase is Phase.THINKING):
            return "listening"
        return str(floor.phase.value)

    @property
    def replying(self) -> bool:
        """Whether a reply has the floor."""
        return self.floor is not None

    def can_barge_in(self) -> bool:
        """Whether the user speaking now would cut the agent off (audible and interruptible)."""
        floor = self.floor
        return floor is not None and floor.phase is not Phase.THINKING and floor.interruptible

    # --- the one entry point --------------------------------------------------------------------------------

    def receive(self, event: Event) -> list[Action]:
        """What to do about ``event``, in order."""
        if isinstance(event, UserSpeechStarted):
            return self._interrupt() if self.can_barge_in() else []
        if isinstance(event, EarlyTranscript):
            return self._early(event)
        if isinstance(event, UserResumed):
            return self._drop_held()
        if isinstance(event, FinalTranscript | TypedMessage):
            return self._turn(event)
        if isinstance(event, ClientInterrupt):
            return self._interrupt(notify=False) if self.floor is not None else []
        if isinstance(event, SpeakRequest):
            self._speeches.append(event)
            return self._next() if self.floor is None else []
        if isinstance(event, ReplyPhase):
            if self.floor is not None and self.floor.reply == event.reply:
                self.floor.phase = Phase(event.phase)
            return []
        if isinstance(event, ReplyEnded):
            if self.floor is None or self.floor.reply != event.reply:
                return []
            self.floor = None
            return self._next()
        if isinstance(event, CallEnded):
            return self._end()
        raise TypeError(f"not a turn-taking event: {event!r}")

    # --- decisions ------------------------------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _interrupt(self, notify: bool = True, hook: bool = True) -> list[Action]:
        floor, self.floor = self.floor, None
        return [] if floor is None else [Interrupt(floor.reply, notify=notify, hook=hook)]

    def _drop_held(self) -> list[Action]:
        held, self.held = self.held, None
        return [] if held is None else [DropReply(held.reply)]

    def _early(self, event: EarlyTranscript) -> list[Action]:
        actions = self._drop_held()
        if event.text.strip():
            self.held = _Held(self._new_id(), event.text.strip())
            actions.append(StartReply(self.held.reply, self.held.text, held=True,
                                      speech_ended_at=event.speech_ended_at))
        return actions

    def _turn(self, event: FinalTranscript | TypedMessage) -> list[Action]:
        text = event.text.strip()
        if not text:
            return self._drop_held()
        if self.floor is not None and not self.floor.interruptible:
            self._waiting.append(event)  # answered once the firm reply has been heard
            return self._drop_held()
        if isinstance(event, TypedMessage):
            cut = self._interrupt()
            self.floor = _Floor(self._new_id(), self.allow_interruptions)
            return [*cut, StartReply(self.floor.reply, text, source="text")]
        held, self.held = self.held, None
        if held is not None and same_words(held.text, text):
            cut = self._interrupt()
            self.floor = _Floor(held.reply, self.allow_interruptions)
            return [*cut, ReleaseReply(held.reply, text, event.speech_ended_at, event.at)]
        dropped: list[Action] = [DropReply(held.reply)] if held is not None else []  # they said something else
        cut = self._interrupt()
        self.floor = _Floor(self._new_id(), self.allow_interruptions)
        start = StartReply(self.floor.reply, text, speech_ended_at=event.speech_ended_at, final_at=event.at)
        return [*dropped, *cut, start]

    def _next(self) -> list[Action]:
        """The floor is free: a turn that waited behind a firm reply, else the next speak request."""
        if self._waiting:
            return self._turn(self._waiting.popleft())
        if self._speeches:
            request = self._speeches.popleft()
            self.floor = _Floor(self._new_id(), request.interruptible and self.allow_interruptions, quiet=True)
            return [StartSpeech(self.floor.reply, request.token, request.text, request.save, request.interruptible)]
        return []

    def _end(self) -> list[Action]:
        """The call ended: what was in flight stops; what waits (speak requests, typed turns) goes on as text."""
        return [*self._drop_held(), *self._interrupt(notify=False, hook=False), *self._next()]

    def close(self) -> list[Action]:
        """The connection is gone: everything stops and no speak request will be said."""
        actions = [*self._drop_held(), *self._interrupt(notify=False, hook=False)]
        actions += [CancelSpeech(request.token) for request in self._speeches]
        self._speeches.clear()
        self._waiting.clear()
        return actions
