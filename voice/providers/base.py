"""Provider contracts: speech-to-text (:class:`Transcriber`) and text-to-speech (:class:`TTSProvider`).

Both are small on purpose. A transcriber turns a stream of 16 kHz int16 PCM into events; a TTS provider turns text
into audio at its native rate (the engine resamples). Implement one in an afternoon:

>>> class MySTT(Transcriber):
...     async def create_session(self, options):
...         return MySession(options.on_event)   # call on_event(SpeechStarted()), Interim(...), Final(...)
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ..audio import AudioChunk

# --- speech-to-text ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeechStarted:
    """The user started speaking (drives barge-in)."""

    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class SpeechStopped:
    """The user stopped speaking: silence began (the turn may go on after a pause). Optional: lets the engine tell a
    noise or a short acknowledgement from the start of an interruption."""

    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Interim:
    """A provisional transcript of the utterance in progress ("" clears it)."""

    text: str


@dataclass(frozen=True)
class Final:
    """The utterance is over; ``text`` is the user's turn. ``speech_ended_at`` is the monotonic time the user
    stopped speaking (for latency metrics), if the provider knows it."""

    text: str
    speech_ended_at: float | None = None
    #: how sure the transcriber is of ``text`` (0–1; Whisper: the mean token probability), None if it does not say
    confidence: float | None = None


@dataclass(frozen=True)
class TranscriberError:
    """The session failed; ``fatal`` means it will send nothing more."""

    message: str
    fatal: bool = False


@dataclass(frozen=True)
class EagerFinal:
    """A *speculative* end of turn: the provider thinks the user is probably done and ``text`` is the turn so far.

    Only providers with eager end-of-turn detection emit it (e.g. Deepgram Flux with ``eager_eot_threshold``). The
    engine may start answering (run ``on_turn``, call the LLM) right away but must not speak yet. What follows is
    exactly one of:

    * :class:`Final` — the turn is committed. If its text equals the eager text the speculative work can be used
      as is; if it differs, the engine redoes the turn with the final text.
    * :class:`TurnResumed` — the user kept talking; the speculative turn is void and its work must be discarded.
      A later :class:`EagerFinal` and/or :class:`Final` follow for the same (longer) turn.
    """

    text: str
    speech_ended_at: float | None = None
    #: how sure the transcriber is of ``text`` (0–1), None if it does not say
    confidence: float | None = None


@dataclass(frozen=True)
class TurnResumed:
    """The user resumed speaking after an :class:`EagerFinal`: that speculative turn is void (cancel its work)."""

    at: float = field(default_factory=time.monotonic)


TranscriberEvent = SpeechStarted | SpeechStopped | Interim | EagerFinal | TurnResumed | Final | TranscriberError


@dataclass
class TranscriberOptions:
    """What a session is created with. ``on_event`` must be called on the event loop's thread."""

    on_event: Callable[[TranscriberEvent], None]
    sample_rate: int = 16_000
    language: str = "en"
    #: set when the engine decides the end of each turn (it calls ``commit()`` then): end an utterance on your own
    #: only after this much silence. None: the provider's own endpointing decides.
    max_silence_ms: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class TranscriberSession(ABC):
    """One call's stream of audio into a transcriber. Lives for the whole call."""

    @abstractmethod
    def feed(self, pcm: bytes) -> None:
        """Queue 16 kHz mono int16 PCM (any whole number of samples). Must return quickly, never block."""

    async def wait_until_ready(self) -> None:  # noqa: B027 - optional hook
        """Return once the session can transcribe (e.g. its socket is open). Audio fed before is buffered."""

    async def commit(self) -> None:  # noqa: B027 - optional hook
        """The client says the user stopped speaking: finish the utterance now if the provider can."""

    @abstractmethod
    async def close(self) -> None:
        """End the session and free its resources. Idempotent."""


class Transcriber(ABC):
    """A speech-to-text provider. One instance is shared by many calls; each call gets a session."""

    #: True if the sessions emit :class:`SpeechStarted`. If False the engine runs its own VAD for barge-in.
    emits_speech_start: bool = True
    #: True if sessions honour ``TranscriberOptions.max_silence_ms`` and finish an utterance promptly on
    #: ``commit()``, so the engine may decide when a turn is over (semantic end of turn).
    engine_endpointing: bool = False

    @abstractmethod
    async def create_session(self, options: TranscriberOptions) -> TranscriberSession:
        """Start a session for one call."""

    async def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Load models or open pools before the first call."""


# --- text-to-speech ------------------------------------------------------------------------------------------


class TTSProvider(ABC):
    """A text-to-speech provider. ``synthesize`` must honour ``cancel`` (return early when it is set)."""

    #: the rate audio comes out at unless a format in ``formats`` is asked for
    sample_rate: int = 16_000
    #: (encoding, rate) pairs the provider can produce natively, e.g. ("mulaw", 8000) for telephony
    formats: tuple[tuple[str, int], ...] = ()

    @abstractmethod
    async def synthesize(
        self, text: str, cancel: asyncio.Event | None = None, *, encoding: str = "pcm16", sample_rate: int | None = None
    ) -> AudioChunk:
        """Synthesize all of ``text``. ``encoding``/``sample_rate`` are only ever ones listed in ``formats``."""

    async def stream(
        self, text: str, cancel: asyncio.Event | None = None, *, encoding: str = "pcm16", sample_rate: int | None = None
    ) -> AsyncIterator[AudioChunk]:
        """Synthesize ``text`` and yield audio as it is ready. Default: one chunk from :meth:`synthesize`."""
        chunk = await self.synthesize(text, cancel, encoding=encoding, sample_rate=sample_rate)
        if chunk.data and not (cancel and cancel.is_set()):
            yield chunk

    def supports(self, encoding: str, sample_rate: int) -> bool:
        """Whether the provider can produce this format itself (so the transport can skip conversion)."""
        return (encoding, sample_rate) in self.formats

    async def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Load models or open pools before the first call."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Free resources at shutdown."""
