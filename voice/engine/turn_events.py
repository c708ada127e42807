"""The vocabulary of turn-taking: the events a call feeds :class:`~voice.engine.turn_taking.TurnTaking` and the
actions it returns. Plain values; times are ``time.monotonic()`` readings taken by the caller."""

from __future__ import annotations

from dataclasses import dataclass

# --- events: what happened ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallStarted:
    """The call is on (the user may now talk)."""

    at: float = 0.0


@dataclass(frozen=True)
class CallEnded:
    """The call is over: nothing may go on."""


@dataclass(frozen=True)
class UserSpeechStarted:
    """The user started speaking (the STT's speech start, or our own VAD's)."""

    at: float = 0.0


@dataclass(frozen=True)
class UserSpeechStopped:
    """The user stopped speaking (silence began); their turn may or may not be over."""

    at: float = 0.0


@dataclass(frozen=True)
class InterimTranscript:
    """What the user has said so far in the utterance in progress."""

    text: str
    at: float = 0.0


@dataclass(frozen=True)
class EarlyTranscript:
    """A speculative end of turn: the user has probably finished saying ``text`` ("" after a hook dropped it).
    ``complete``: how likely the turn is over (0–1, from the turn detector; None: no opinion)."""

    text: str
    speech_ended_at: float | None = None
    at: float = 0.0
    complete: float | None = None


@dataclass(frozen=True)
class UserResumed:
    """The user went on talking after an :class:`EarlyTranscript`: that guess was wrong."""

    at: float = 0.0


@dataclass(frozen=True)
class FinalTranscript:
    """The user's utterance is over; ``text`` is what they said ("" after a hook dropped it)."""

    text: str
    speech_ended_at: float | None = None
    at: float = 0.0


@dataclass(frozen=True)
class TypedMessage:
    """A typed turn (``text_message``)."""

    text: str
    at: float = 0.0


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
    """A reply reached a phase: "thinking", "speaking" (its first audio is out) or "sent" (all of it is)."""

    reply: int
    phase: str


@dataclass(frozen=True)
class ReplyEnded:
    """A reply's task ended (played out, failed, or cut)."""

    reply: int
    at: float = 0.0


@dataclass(frozen=True)
class Tick:
    """The clock reached a deadline the turn-taking asked for."""

    at: float


Event = (
    CallStarted | CallEnded | UserSpeechStarted | UserSpeechStopped | InterimTranscript | EarlyTranscript
    | UserResumed | FinalTranscript | TypedMessage | ClientInterrupt | SpeakRequest | ReplyPhase | ReplyEnded | Tick
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
class PausePlayback:
    """The user may be interrupting: hold the reply's audio where it is (``playback_pause``) until decided."""

    reply: int


@dataclass(frozen=True)
class ResumePlayback:
    """It was not an interruption (a backchannel, a noise): play on from where the audio paused."""

    reply: int


@dataclass(frozen=True)
class FinishUtterance:
    """The user's turn is over: ask the STT for its final transcript now, without waiting for more silence."""


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
    """Speak request ``token`` will never be said (the connection is gone)."""

    token: int


@dataclass(frozen=True)
class UserIdle:
    """The user has said nothing for ``seconds`` since the agent last finished (``count``: how many times in a row)."""

    seconds: float
    count: int


Action = (
    StartReply | ReleaseReply | DropReply | Interrupt | PausePlayback | ResumePlayback | FinishUtterance
    | StartSpeech | CancelSpeech | UserIdle
)
