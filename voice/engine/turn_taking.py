"""Turn-taking, sans I/O: who has the floor, decided from events, returned as actions.

:class:`TurnTaking` is a pure state machine in the manner of the ``websockets`` library's sans-I/O ``Protocol``: the
call feeds it what happened (:meth:`TurnTaking.receive` with an event from :mod:`.turn_events`) and gets back the
decisions to carry out, in order. It never awaits, never reads a clock or a socket: times come in the events, and
when it needs to be woken it says so in :attr:`TurnTaking.deadline` (the call then feeds it a ``Tick``). So every
decision can be tested with plain values (``tests/test_turn_taking.py``).

What it decides:

* **Floor.** A final transcript or a typed message starts a reply (cutting the one in flight); an early transcript
  starts one *held* (it runs, sends nothing) and the final releases it if the words match.
* **End of turn** (when the engine drives endpointing): after an early transcript, the turn is over once the silence
  since the last word reaches a delay chosen by how complete the turn sounds (short for a complete question, long
  after "remind me to…"); then ``FinishUtterance``. Speech resuming cancels it.
* **Barge-in, pause-then-decide.** Speech over an audible reply pauses it; words that are not a backchannel cut it
  (``Interrupt``); a backchannel ("mhm", "okay") or a sound without words plays it on from where it paused
  (``ResumePlayback``); speech that goes on takes the floor even before a word is transcribed. A backchannel never
  becomes a turn while the agent has the floor.
* **Idle user**, **fixed text** (``speak``) waiting for the floor, replies nobody may interrupt.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from .turn_events import (
    Action,
    CallEnded,
    CallStarted,
    CancelSpeech,
    ClientInterrupt,
    DropReply,
    EarlyTranscript,
    Event,
    FinalTranscript,
    FinishUtterance,
    InterimTranscript,
    Interrupt,
    PausePlayback,
    ReleaseReply,
    ReplyEnded,
    ReplyPhase,
    ResumePlayback,
    SpeakRequest,
    StartReply,
    StartSpeech,
    Tick,
    TypedMessage,
    UserIdle,
    UserResumed,
    UserSpeechStarted,
    UserSpeechStopped,
)
from .turn_policy import TurnPolicy, words


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


@dataclass
class _BargeIn:
    """Speech over the agent's audio, not decided yet."""

    started: float
    speaking: bool = True
    stopped: float = 0.0
    said: str = "none"  # what it said so far: "none", "maybe" (an acknowledgement's start) or "backchannel"


def same_words(a: str, b: str) -> bool:
    """Transcripts that differ only in case and punctuation say the same thing."""
    return words(a) == words(b)


@dataclass
class TurnTaking:
    """Who has the floor. ``floor`` is the reply being produced or heard; ``held`` a speculative one."""

    policy: TurnPolicy = field(default_factory=TurnPolicy)
    #: whether the user may talk over the agent's replies at all (the agent's ``allow_interruptions``)
    allow_interruptions: bool = True
    #: whether end of turn is decided here (``FinishUtterance``) rather than by the STT alone
    endpointing: bool = False
    floor: _Floor | None = None
    held: _Held | None = None
    barge_in: _BargeIn | None = None
    _speeches: deque[SpeakRequest] = field(default_factory=deque)  # waiting for the floor
    _waiting: deque[FinalTranscript | TypedMessage] = field(default_factory=deque)  # turns behind a firm reply
    _next_id: int = 0
    _endpoint_at: float | None = None  # when the user's turn counts as over
    _in_call: bool = False
    _quiet_since: float | None = None  # the floor has been free since (for the idle user)
    _idle_count: int = 0

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
        """Whether the user speaking now may cut the agent off (audible and interruptible)."""
        floor = self.floor
        return floor is not None and floor.phase is not Phase.THINKING and floor.interruptible

    @property
    def deadline(self) -> float | None:
        """When to be woken with a ``Tick`` (None: nothing is pending)."""
        times = [self._endpoint_at, self._idle_at(), *self._barge_in_times()]
        pending = [t for t in times if t is not None]
        return min(pending) if pending else None

    # --- the one entry point --------------------------------------------------------------------------------

    def receive(self, event: Event) -> list[Action]:
        """What to do about ``event``, in order."""
        if isinstance(event, UserSpeechStarted):
            return self._speech_started(event.at)
        if isinstance(event, UserSpeechStopped):
            return self._speech_stopped(event.at)
        if isinstance(event, InterimTranscript):
            return self._heard(event.text, final=False)
        if isinstance(event, EarlyTranscript):
            return self._early(event)
        if isinstance(event, UserResumed):
            self._endpoint_at = None
            return self._drop_held()
        if isinstance(event, FinalTranscript | TypedMessage):
            self._user_active()
            return self._turn(event)
        if isinstance(event, Tick):
            return self._tick(event.at)
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
            self.floor, self.barge_in = None, None
            actions = self._next()
            if self.floor is None and self._in_call:
                self._quiet_since = event.at
            return actions
        if isinstance(event, CallStarted):
            self._in_call, self._quiet_since, self._idle_count = True, event.at, 0
            return []
        if isinstance(event, CallEnded):
            return self._end()
        raise TypeError(f"not a turn-taking event: {event!r}")

    # --- the floor ------------------------------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _interrupt(self, notify: bool = True, hook: bool = True) -> list[Action]:
        floor, self.floor, self.barge_in = self.floor, None, None
        return [] if floor is None else [Interrupt(floor.reply, notify=notify, hook=hook)]

    def _drop_held(self) -> list[Action]:
        held, self.held = self.held, None
        return [] if held is None else [DropReply(held.reply)]

    def _early(self, event: EarlyTranscript) -> list[Action]:
        text = event.text.strip()
        actions = self._heard(text, final=True)
        if self.floor is None or self.policy.classify(text) == "words":  # else: acknowledging the agent
            actions += self._drop_held()
            if text:
                self.held = _Held(self._new_id(), text)
                actions.append(StartReply(self.held.reply, text, held=True, speech_ended_at=event.speech_ended_at))
        if self.endpointing and text:
            ended = event.speech_ended_at if event.speech_ended_at is not None else event.at
            self._endpoint_at = ended + self.policy.endpoint_delay(event.complete)
            actions += self._tick(event.at)
        return actions

    def _turn(self, event: FinalTranscript | TypedMessage) -> list[Action]:
        self._endpoint_at = None
        text = event.text.strip()
        if isinstance(event, FinalTranscript):
            heard = self._heard(text, final=True)
            if not text or (self.floor is not None and self.policy.classify(text) != "words"):
                return heard + self._drop_held()  # nothing, or a backchannel while the agent has the floor
        elif not text:
            return []
        else:
            heard = []
        if self.floor is not None and not self.floor.interruptible:
            self._waiting.append(event)  # answered once the firm reply has been heard
            return heard + self._drop_held()
        if isinstance(event, TypedMessage):
            cut = self._interrupt()
            self.floor = _Floor(self._new_id(), self.allow_interruptions)
            return [*cut, StartReply(self.floor.reply, text, source="text")]
        held, self.held = self.held, None
        if held is not None and same_words(held.text, text):
            cut = heard + self._interrupt()
            self.floor = _Floor(held.reply, self.allow_interruptions)
            return [*cut, ReleaseReply(held.reply, text, event.speech_ended_at, event.at)]
        dropped: list[Action] = [DropReply(held.reply)] if held is not None else []  # they said something else
        cut = heard + self._interrupt()
        self.floor = _Floor(self._new_id(), self.allow_interruptions)
        start = StartReply(self.floor.reply, text, speech_ended_at=event.speech_ended_at, final_at=event.at)
        return [*dropped, *cut, start]

    def _next(self) -> list[Action]:
        """The floor is free: a turn that waited behind a firm reply, else the next speak request."""
        if self._waiting:
            return self._turn(self._waiting.popleft())
        if self._speeches:
            request = self._speeches.popleft()
            interruptible = request.interruptible and self.allow_interruptions
            self.floor = _Floor(self._new_id(), interruptible, quiet=True)
            return [StartSpeech(self.floor.reply, request.token, request.text, request.save, request.interruptible)]
        return []

    # --- barge-in: pause, then decide -----------------------------------------------------------------------

    def _speech_started(self, at: float) -> list[Action]:
        self._user_active()
        if self.barge_in is not None:
            self.barge_in.speaking = True
            return []
        if not self.can_barge_in():
            return []
        assert self.floor is not None
        self.barge_in = _BargeIn(at)
        return [PausePlayback(self.floor.reply)]

    def _speech_stopped(self, at: float) -> list[Action]:
        if self.barge_in is not None:
            self.barge_in.speaking, self.barge_in.stopped = False, at
        elif self.floor is None and self._in_call and self._quiet_since is None:
            self._quiet_since = at  # the idle clock restarts from the user's last sound
        return []

    def _heard(self, text: str, final: bool) -> list[Action]:
        """Words while the agent's reply is paused (or playing): cut it, or keep it."""
        kind = self.policy.classify(text, partial=not final)
        if kind == "words" and self.floor is not None and (self.barge_in is not None or self.can_barge_in()):
            self._user_active()
            return self._interrupt()
        barge = self.barge_in
        if barge is None or kind == "none":
            return []
        barge.said = kind
        if final and kind == "backchannel":  # an acknowledgement, finished: play on
            return self._resume()
        return []

    def _resume(self) -> list[Action]:
        self.barge_in = None
        return [ResumePlayback(self.floor.reply)] if self.floor is not None else []

    def _barge_in_times(self) -> list[float | None]:
        barge, policy = self.barge_in, self.policy
        if barge is None:
            return []
        if barge.speaking:
            return [barge.started + self._speech_limit(barge), barge.started + policy.barge_in_timeout]
        return [barge.stopped + policy.resume_after, barge.started + policy.barge_in_timeout]

    def _speech_limit(self, barge: _BargeIn) -> float:
        policy = self.policy
        limits = {"backchannel": policy.backchannel_max, "maybe": policy.maybe_max}
        return limits.get(barge.said, policy.interrupt_after)

    def _tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        barge = self.barge_in
        if barge is not None:
            policy = self.policy
            if now >= barge.started + policy.barge_in_timeout:
                actions += self._resume()
            elif barge.speaking:
                if now >= barge.started + self._speech_limit(barge):
                    actions += self._interrupt()  # they keep talking: they want the floor
            elif now >= barge.stopped + policy.resume_after:
                actions += self._resume()  # a sound, a cough, an acknowledgement: play on
        if self._endpoint_at is not None and now >= self._endpoint_at:
            self._endpoint_at = None
            actions.append(FinishUtterance())
        idle_at = self._idle_at()
        if idle_at is not None and now >= idle_at:
            self._idle_count += 1
            self._quiet_since = now
            assert self.policy.user_idle is not None
            actions.append(UserIdle(self.policy.user_idle * self._idle_count, self._idle_count))
        return actions

    # --- the user's silence ---------------------------------------------------------------------------------

    def _idle_at(self) -> float | None:
        if self.policy.user_idle is None or self._quiet_since is None or self.floor is not None:
            return None
        return self._quiet_since + self.policy.user_idle

    def _user_active(self) -> None:
        self._quiet_since, self._idle_count = None, 0

    # --- the end --------------------------------------------------------------------------------------------

    def _end(self) -> list[Action]:
        """The call ended: what was in flight stops; what waits (speak requests, typed turns) goes on as text."""
        self._in_call, self._quiet_since, self._endpoint_at = False, None, None
        return [*self._drop_held(), *self._interrupt(notify=False, hook=False), *self._next()]

    def close(self) -> list[Action]:
        """The connection is gone: everything stops and no speak request will be said."""
        actions = [*self._drop_held(), *self._interrupt(notify=False, hook=False)]
        actions += [CancelSpeech(request.token) for request in self._speeches]
        self._speeches.clear()
        self._waiting.clear()
        self._endpoint_at = self._quiet_since = None
        return actions
