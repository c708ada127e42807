"""The speech-to-text side of one call: a transcriber session for the call's whole life, audio buffered while it
opens, and — when a session dies — a new one with the speech since the last final replayed, so nothing is lost."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .providers.base import Transcriber, TranscriberError, TranscriberEvent, TranscriberOptions, TranscriberSession

log = logging.getLogger("voice.call")

BYTES_PER_SECOND = 32_000  # 16 kHz int16


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
        self.transcriber: Transcriber | None = None
        self.session: TranscriberSession | None = None
        self._pending: list[bytes] | None = []  # audio while a session opens
        self._pending_bytes = 0
        self._since_final = bytearray()  # replayed into a re-created session
        self._failures: list[float] = []
        self._open_error: str | None = None
        self._tasks: set[asyncio.Task] = set()
        self.closed = False

    async def open(self, transcriber: Transcriber) -> None:
        """Open the first session and hand it the audio buffered so far. Raises if the provider fails to start."""
        self.transcriber = transcriber
        session = await self._open_session()
        if self.closed:
            await _close_quietly(session)
            return
        self._attach(session, b"".join(self._pending or []))
        if self._open_error is not None:
            self._spawn(self._recover(self._open_error))

    def feed(self, pcm: bytes) -> None:
        session = self.session
        if session is None:
            if self._pending is not None and self._pending_bytes < self._limit:
                self._pending.append(pcm)
                self._pending_bytes += len(pcm)
            return
        buffer = self._since_final  # appended before feeding: a final raised by this very frame clears it
        buffer += pcm
        if len(buffer) > self._limit * 1.25:
            del buffer[: len(buffer) - self._limit]
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
                self._spawn(self._recover(event.message))
            return
        self._on_event(event)

    def final_seen(self) -> None:
        self._since_final.clear()

    async def commit(self) -> None:
        if self.session is not None:
            await self.session.commit()

    async def close(self) -> None:
        self.closed = True
        self._pending = None
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        session, self.session = self.session, None
        if session is not None:
            await _close_quietly(session)

    async def _open_session(self) -> TranscriberSession:
        assert self.transcriber is not None
        self._open_error = None
        session = await self.transcriber.create_session(TranscriberOptions(on_event=self.handle))
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
        self._attach(session, bytes(self._since_final) + b"".join(self._pending or []))

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _close_quietly(session: TranscriberSession) -> None:
    try:
        await session.close()
    except Exception:  # noqa: BLE001 - closing a broken session must not fail the call
        log.debug("closing a broken STT session failed", exc_info=True)
