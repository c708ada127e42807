"""The speech-to-text side of one call: a transcriber session for the call's whole life, audio buffered while it
opens, and — when a session dies — a new one with the speech since the last final replayed, so nothing is lost.
Plus :class:`BargeInVAD`, our own speech-start detector for transcribers that report none."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from .. import observability
from .._aio import TaskSet
from ..audio.vad import VADConfig, VADState, VoiceActivityDetector
from ..providers.base import Transcriber, TranscriberError, TranscriberEvent, TranscriberOptions, TranscriberSession

log = logging.getLogger("voice.call")

BYTES_PER_SECOND = 32_000  # 16 kHz int16
RECENT_SECONDS = 8  # what a turn detector looks at (Smart Turn's window)
RECENT_BYTES = RECENT_SECONDS * BYTES_PER_SECOND


class AudioTail:
    """At least the last ``limit`` bytes of a stream, kept as the chunks they arrived in: appending a frame copies
    nothing (the audio path calls it for every frame), whole chunks fall off the front once they are not needed."""

    __slots__ = ("_chunks", "limit", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._chunks: deque[bytes] = deque()

    def append(self, data: bytes) -> None:
        """Add a chunk (an immutable ``bytes``: it is kept, not copied)."""
        chunks = self._chunks
        chunks.append(data)
        self.size += len(data)
        while chunks and self.size - len(chunks[0]) >= self.limit:
            self.size -= len(chunks.popleft())

    def clear(self) -> None:
        """Forget everything."""
        self._chunks.clear()
        self.size = 0

    def last(self) -> bytes:
        """The last ``limit`` bytes (all of them if fewer)."""
        data = b"".join(self._chunks)
        return data[-self.limit :] if len(data) > self.limit else data


class SpeechInput:
    """Feeds one call's audio to its STT. ``on_event`` receives the session's events (fatal errors excepted, which
    are handled here); ``on_give_up(reason)`` runs when a third failure within a minute makes recovery pointless."""

    def __init__(
        self,
        on_event: Callable[[TranscriberEvent], None],
        on_give_up: Callable[[str], Awaitable[None]],
        buffer_seconds: float,
    ) -> None:
        self._on_event = on_event
        self._on_give_up = on_give_up
        self._limit = int(buffer_seconds * BYTES_PER_SECOND)
        self.language = "en"
        self.max_silence_ms: int | None = None
        self._recent = AudioTail(RECENT_BYTES)  # the last RECENT_SECONDS of audio, for the turn detector
        self.transcriber: Transcriber | None = None
        self.session: TranscriberSession | None = None
        self._pending: list[bytes] | None = []  # audio while a session opens
        self._pending_bytes = 0
        self._since_final = AudioTail(self._limit)  # replayed into a re-created session
        self._failures: list[float] = []
        self._open_error: str | None = None
        self._tasks = TaskSet("speech input")
        self.closed = False

    async def open(self, transcriber: Transcriber, language: str = "en", max_silence_ms: int | None = None) -> None:
        """Open the first session and hand it the audio buffered so far. Raises if the provider fails to start.
        ``max_silence_ms``: the engine decides the end of turn (see ``TranscriberOptions``)."""
        self.transcriber = transcriber
        self.language = language
        self.max_silence_ms = max_silence_ms
        session = await self._open_session()
        if self.closed:
            await _close_quietly(session)
            return
        self._attach(session, b"".join(self._pending or []))
        if self._open_error is not None:
            self._tasks.spawn(self._recover(self._open_error))

    def feed(self, pcm: bytes) -> None:
        """16 kHz mono int16 from the caller (buffered while no session is open)."""
        if type(pcm) is not bytes:
            pcm = bytes(pcm)  # kept by reference below: must not change under us
        self._recent.append(pcm)
        session = self.session
        if session is None:
            if self._pending is not None and self._pending_bytes < self._limit:
                self._pending.append(pcm)
                self._pending_bytes += len(pcm)
            return
        self._since_final.append(pcm)  # before feeding: a final raised by this very frame clears it
        try:
            session.feed(pcm)
        except Exception as exc:  # noqa: BLE001 - a broken session is replaced, not fatal to the call
            self.handle(TranscriberError(type(exc).__name__, fatal=True))

    def handle(self, event: TranscriberEvent) -> None:
        """The session's events pass through here on their way to the call."""
        if isinstance(event, TranscriberError) and event.fatal:
            if self.session is None:
                self._open_error = event.message  # while (re)opening: the opener counts it
            else:
                self._tasks.spawn(self._recover(event.message))
            return
        self._on_event(event)

    def recent_audio(self) -> bytes:
        """The caller's last ``RECENT_SECONDS`` of audio, ending now."""
        return self._recent.last()

    def final_seen(self) -> None:
        """A final transcript arrived: the audio before it need not be replayed any more."""
        self._since_final.clear()

    async def commit(self) -> None:
        """Ask the session to finish the utterance now (the client says the user stopped)."""
        if self.session is not None:
            await self.session.commit()

    async def close(self) -> None:
        """Close the session; nothing more is transcribed."""
        self.closed = True
        self._pending = None
        await self._tasks.cancel_all()
        session, self.session = self.session, None
        if session is not None:
            await _close_quietly(session)

    async def _open_session(self) -> TranscriberSession:
        assert self.transcriber is not None
        self._open_error = None
        options = TranscriberOptions(on_event=self.handle, language=self.language, max_silence_ms=self.max_silence_ms)
        session = await self.transcriber.create_session(options)
        await session.wait_until_ready()
        return session

    def _attach(self, session: TranscriberSession, replay: bytes) -> None:
        self._pending = None
        for offset in range(0, len(replay), 3200):
            session.feed(replay[offset : offset + 3200])
        self.session = session

    async def _recover(self, reason: str) -> None:
        old, self.session = self.session, None
        if old is None or self.closed:
            return
        self._pending, self._pending_bytes = [], 0  # audio arriving meanwhile waits here
        observability.provider_error("stt", type(self.transcriber).__name__)
        await _close_quietly(old)
        while True:
            now = time.monotonic()
            self._failures = [t for t in self._failures if now - t < 60] + [now]
            if len(self._failures) > 2:
                self._pending = None
                await self._on_give_up(reason)
                return
            log.warning("STT session died (%s); re-creating it", reason)
            try:
                session = await self._open_session()
            except Exception as exc:  # noqa: BLE001 - counted as one more failure
                reason = type(exc).__name__
                continue
            if self._open_error is None:
                break
            reason = self._open_error  # it died while opening
            await _close_quietly(session)
        if self.closed:
            await _close_quietly(session)
            return
        self._attach(session, self._since_final.last() + b"".join(self._pending or []))
        observability.provider_reconnect("stt", type(self.transcriber).__name__)


async def _close_quietly(session: TranscriberSession) -> None:
    try:
        await session.close()
    except Exception:
        log.debug("closing a broken STT session failed", exc_info=True)


class BargeInVAD:
    """Our own speech detector, for transcribers that report no speech starts. It listens only while ``armed``
    (the agent is audible), so speech that began before the agent spoke counts once it is heard over it."""

    def __init__(self) -> None:
        self._vad = VoiceActivityDetector(VADConfig(start_ms=100, stop_ms=200))

    def process(self, pcm: bytes, armed: bool) -> list[str]:
        """"start" / "stop" for speech that started or stopped in this audio."""
        if not armed and not self._vad.speaking:
            if self._vad.state is not VADState.QUIET:
                self._vad.reset()
            return []
        return [event.kind for event in self._vad.process(pcm)]
