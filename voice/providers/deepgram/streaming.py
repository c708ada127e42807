"""The streaming speech-to-text session behind Nova-3 and Flux: one connection loop with a sender, a receiver and a
watchdog; audio kept in a bounded replay buffer until a final result covers it, so a dropped socket reconnects with
backoff and resends what was not yet transcribed."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from abc import abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any

from ... import observability
from ..base import TranscriberError, TranscriberOptions, TranscriberSession
from ._common import (
    FATAL_STATUSES,
    ClientHolder,
    DeepgramError,
    api_error_status,
    backoff_delay,
    describe_exception,
    log,
    message_dict,
    status_message,
)


class ReplayBuffer:
    """Audio fed to a streaming session, addressed by absolute byte offset since the session started.

    It holds both audio not yet sent and audio sent but not yet covered by a final result. On reconnect the
    session resends from :attr:`start`; when the provider finalizes audio up to some offset, :meth:`cover` drops
    it. The buffer is bounded (``max_seconds``): beyond that the oldest audio is discarded.

    It also remembers when each piece was fed (monotonic clock) so stream timestamps can be turned back into
    wall-clock times (:meth:`time_at`) for latency metrics.
    """

    def __init__(self, bytes_per_second: int, max_seconds: float = 30.0) -> None:
        self.bytes_per_second = bytes_per_second
        self.max_bytes = int(bytes_per_second * max_seconds)
        self._data = bytearray()
        self.start = 0  # absolute offset of self._data[0]
        self._marks_end: list[int] = []  # absolute end offset of each fed piece
        self._marks_time: list[float] = []  # monotonic time it was fed
        self.dropped = 0  # bytes discarded because the bound was hit

    @property
    def end(self) -> int:
        """Absolute offset just past the newest byte."""
        return self.start + len(self._data)

    def feed(self, pcm: bytes, now: float) -> int:
        """Append audio; returns how many old bytes had to be discarded to stay within the bound."""
        self._data += pcm
        self._marks_end.append(self.end)
        self._marks_time.append(now)
        over = len(self._data) - self.max_bytes
        if over > self.max_bytes // 16:  # trim in steps, not a memmove of the whole buffer per frame
            over += over % 2  # keep whole int16 samples
            del self._data[:over]
            self.start += over
            self.dropped += over
        if len(self._marks_end) > 4096:
            keep_from = bisect.bisect_left(self._marks_end, self.start - self.max_bytes)
            del self._marks_end[:keep_from]
            del self._marks_time[:keep_from]
        return max(0, over)

    def read(self, pos: int, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` from absolute offset ``pos`` (clamped to what is retained)."""
        lo = max(pos, self.start) - self.start
        with memoryview(self._data) as view:
            return bytes(view[lo : lo + max_bytes])

    def cover(self, pos: int) -> None:
        """Audio before absolute offset ``pos`` is final: it will never need replaying."""
        pos = min(pos, self.end)
        pos -= (pos - self.start) % 2
        if pos > self.start:
            del self._data[: pos - self.start]
            self.start = pos

    def time_at(self, pos: int) -> float | None:
        """Monotonic time at which the audio at absolute offset ``pos`` was fed (assuming real-time audio)."""
        i = bisect.bisect_left(self._marks_end, pos)
        if i >= len(self._marks_end):
            if not self._marks_end:
                return None
            i = len(self._marks_end) - 1
        return self._marks_time[i] - max(0, self._marks_end[i] - pos) / self.bytes_per_second


# --- streaming speech-to-text session: connection loop, sender, replay -------------------------------------


@dataclass
class StreamSettings:
    """Timeouts and limits of a streaming STT session (all seconds unless noted)."""

    connect_timeout: float = 5.0  # WebSocket handshake (and, for Flux, the Connected message)
    close_timeout: float = 2.0  # wait for the server's last results after CloseStream
    stall_timeout: float = 20.0  # audio sent but no message back for this long → reconnect
    max_reconnect_attempts: int = 5  # consecutive failed attempts before a fatal error
    backoff_base: float = 0.1
    backoff_cap: float = 5.0
    replay_seconds: float = 30.0  # bound of the replay buffer
    chunk_ms: int = 0  # batch audio into messages of at least this much (waits at most that long); 0 = as fed
    max_chunk_ms: int = 250  # largest audio message
    keepalive_interval: float | None = 4.0  # idle seconds before the session's idle action (KeepAlive, ...)


class _Conn:
    """One WebSocket connection of a session."""

    def __init__(self, sock: Any, index: int, replay_end: int, now: float) -> None:
        self.sock = sock
        self.index = index
        self.replay_end = replay_end  # audio before this offset was already sent on an earlier connection
        self.start_abs: int | None = None  # absolute offset of this connection's stream time 0
        self.opened_at = now
        self.last_send = now
        self.last_recv = now
        self.unanswered_since: float | None = None
        self.useful = False  # got a transcript: resets the reconnect attempt counter
        self.ready = asyncio.Event()


class _Stalled(Exception):
    pass



class StreamingSession(TranscriberSession):
    """Base of the Nova-3 and Flux sessions: owns the connection loop and the audio path.

    * ``feed`` appends to a :class:`ReplayBuffer` and wakes the sender; it never blocks. Audio fed before the
      socket opens is simply sent once it does.
    * On a dropped socket, a server close (e.g. 1011) or a stall, the session reconnects with exponential
      backoff and resends every byte not yet covered by a final result (see :meth:`_cover`), so no speech is
      lost. The first reconnect is silent (logged only); while reconnecting keeps failing, a non-fatal
      :class:`TranscriberError` per attempt; beyond ``max_reconnect_attempts`` a fatal one.
    * HTTP 401/403 (and other non-retryable statuses) on the handshake → fatal :class:`TranscriberError` at once.

    Subclasses implement :meth:`_open` (the SDK's ``connect``), :meth:`_handle` (one server message) and
    :meth:`_send_control` ("commit", "close", "keepalive").
    """

    what = "Deepgram streaming"
    ready_on_open = True  # False: subclass calls _mark_ready() (e.g. on Flux's Connected message)

    def __init__(self, holder: ClientHolder, options: TranscriberOptions, settings: StreamSettings) -> None:
        self._holder = holder
        self._options = options
        self._s = settings
        self._bps = options.sample_rate * 2
        self._buf = ReplayBuffer(self._bps, settings.replay_seconds)
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._controls: deque[str] = deque()
        self._closing = False
        self._closed = False
        self._dead = False
        self._conn: _Conn | None = None
        self._sent_high = 0
        self._lost_warned = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Begin connecting (called by the provider's ``create_session``)."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    # --- TranscriberSession ---------------------------------------------------------------------------------

    def feed(self, pcm: bytes) -> None:
        """Queue audio (replayed after a reconnect if not yet transcribed)."""
        if self._closed or self._dead or not pcm:
            return
        self._buf.feed(pcm, time.monotonic())
        self._wake.set()

    async def wait_until_ready(self) -> None:
        """Until the first socket is open."""
        await self._ready.wait()

    async def commit(self) -> None:
        """Ask Deepgram to finish the utterance now."""
        if not (self._closed or self._dead):
            self._controls.append("commit")
            self._wake.set()

    async def close(self) -> None:
        """Close the socket and stop reconnecting."""
        if self._closed:
            return
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            conn = self._conn
            if conn is not None and conn.ready.is_set() and not self._dead:
                self._closing = True
                self._controls.append("close")
                self._wake.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(task), self._s.close_timeout * 2 + 0.5)
            self._closing = True
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._ready.set()

    # --- for subclasses -------------------------------------------------------------------------------------

    @abstractmethod
    def _open(self, client: Any) -> Any:
        """The SDK's connect context manager for this provider's endpoint and options."""

    @abstractmethod
    def _handle(self, msg: dict, conn: _Conn) -> None:
        """One JSON message from the server."""

    @abstractmethod
    async def _send_control(self, conn: _Conn, name: str) -> None:
        """Send a control message ("keepalive", "finalize", "close", ...)."""

    async def _on_idle(self, conn: _Conn, idle: float) -> None:
        """Called when no audio has been sent for a while; default: KeepAlive every ``keepalive_interval``."""
        if self._s.keepalive_interval is not None and idle >= self._s.keepalive_interval:
            await self._send_control(conn, "keepalive")
            conn.last_send = time.monotonic()

    def _on_connection_lost(self) -> None:
        """Called before reconnecting (e.g. to void a speculative turn)."""

    def _emit(self, event: Any) -> None:
        try:
            self._options.on_event(event)
        except Exception:  # noqa: BLE001 - a faulty callback must not kill the receiver
            log.exception("%s: on_event raised", self.what)

    def _mark_ready(self, conn: _Conn) -> None:
        conn.ready.set()
        self._ready.set()

    def _abs(self, conn: _Conn, t: float) -> int:
        """Absolute buffer offset of stream time ``t`` (seconds) on ``conn``."""
        base = conn.start_abs if conn.start_abs is not None else self._buf.start
        pos = base + int(t * self._bps)
        return pos - pos % 2

    def _cover(self, conn: _Conn, t: float) -> None:
        """Audio up to stream time ``t`` is final: drop it from the replay buffer."""
        self._buf.cover(self._abs(conn, t))

    def _wall_time(self, conn: _Conn, t: float) -> float | None:
        """Monotonic time the user spoke stream time ``t`` (from when that audio was fed)."""
        return self._buf.time_at(self._abs(conn, t))

    def _fail(self, message: str) -> None:
        if not self._dead:
            self._dead = True
            message = self._holder.config.redact(message)
            log.error("%s: %s", self.what, message)
            self._emit(TranscriberError(message, fatal=True))
        self._ready.set()

    # --- connection loop ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt, index = 0, 0
        while not self._closing:
            try:
                client = self._holder.get()
            except DeepgramError as exc:
                self._fail(str(exc))
                return
            stack = contextlib.AsyncExitStack()
            conn: _Conn | None = None
            try:
                sock = await asyncio.wait_for(stack.enter_async_context(self._open(client)), self._s.connect_timeout)
                conn = _Conn(sock, index, self._sent_high, time.monotonic())
                index += 1
                self._conn = conn
                if self.ready_on_open:
                    self._mark_ready(conn)
                await self._serve(conn)
                reason = "closed by server"
            except asyncio.CancelledError:
                await self._close_stack(stack)
                raise
            except Exception as exc:  # noqa: BLE001 - classified below: fatal or retried
                status = api_error_status(exc)
                if status in FATAL_STATUSES:
                    await self._close_stack(stack)
                    self._fail(status_message(status, self.what))
                    return
                reason = self._holder.config.redact(describe_exception(exc))
            await self._close_stack(stack)
            self._conn = None
            if self._closing:
                return
            self._on_connection_lost()
            if conn is not None and (conn.useful or time.monotonic() - conn.opened_at > 5.0):
                attempt = 0
            attempt += 1
            if attempt > self._s.max_reconnect_attempts:
                self._fail(f"{self.what} unavailable after {attempt - 1} reconnect attempts ({reason})")
                return
            log.warning("%s connection lost (%s); reconnecting (attempt %d)", self.what, reason, attempt)
            observability.provider_reconnect("stt", self.what)
            if attempt > 1:  # a single transparent reconnect is not the caller's concern; an outage is
                self._emit(TranscriberError(f"{self.what} connection lost ({reason}); reconnecting", fatal=False))
            await asyncio.sleep(backoff_delay(attempt, base=self._s.backoff_base, cap=self._s.backoff_cap))

    async def _close_stack(self, stack: contextlib.AsyncExitStack) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stack.aclose(), self._s.close_timeout)

    async def _serve(self, conn: _Conn) -> None:
        sender = asyncio.create_task(self._sender(conn))
        receiver = asyncio.create_task(self._receiver(conn))
        watchdog = asyncio.create_task(self._watchdog(conn))
        tasks = (sender, receiver, watchdog)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if sender in done and sender.exception() is None:  # "close" was sent: let the last results arrive
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(receiver, self._s.close_timeout)
                return
            for task in tasks:
                if task in done and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _sender(self, conn: _Conn) -> None:
        await conn.ready.wait()
        pos = self._buf.start
        min_chunk = self._bps * self._s.chunk_ms // 1000
        max_chunk = max(2, self._bps * self._s.max_chunk_ms // 1000)
        pending_since: float | None = None
        while True:
            self._wake.clear()
            if pos < self._buf.start:
                if not self._lost_warned and pos >= self._sent_high:
                    log.warning(
                        "%s: replay buffer overflow, %d bytes of audio dropped", self.what, self._buf.start - pos
                    )
                    self._lost_warned = True
                pos = self._buf.start
            avail = self._buf.end - pos
            now = time.monotonic()
            flush = bool(self._controls) or pos < self._sent_high  # replaying: no batching
            if avail > 0 and (
                avail >= min_chunk or flush or (pending_since and now - pending_since >= self._s.chunk_ms / 1000)
            ):
                data = self._buf.read(pos, min(avail, max_chunk))
                if conn.start_abs is None:
                    conn.start_abs = pos
                await conn.sock.send_media(data)
                pos += len(data)
                self._sent_high = max(self._sent_high, pos)
                conn.last_send = time.monotonic()
                if conn.unanswered_since is None:
                    conn.unanswered_since = conn.last_send
                pending_since = None
                continue
            if avail > 0 and pending_since is None:
                pending_since = now
            if self._controls and avail == 0:
                name = self._controls.popleft()
                await self._send_control(conn, name)
                conn.last_send = time.monotonic()
                if name == "close":
                    return
                continue
            timeout = self._s.chunk_ms / 1000 if avail > 0 else 0.1
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                if avail == 0:
                    await self._on_idle(conn, time.monotonic() - conn.last_send)

    async def _receiver(self, conn: _Conn) -> None:
        while True:
            msg = await conn.sock.recv()
            conn.last_recv = time.monotonic()
            conn.unanswered_since = None
            data = message_dict(msg)
            if data is not None:
                self._handle(data, conn)

    async def _watchdog(self, conn: _Conn) -> None:
        while True:
            await asyncio.sleep(min(0.25, self._s.stall_timeout / 4))
            now = time.monotonic()
            if not conn.ready.is_set() and now - conn.opened_at > self._s.connect_timeout:
                raise _Stalled(f"no Connected message within {self._s.connect_timeout:g} s")
            if conn.unanswered_since is not None and now - conn.unanswered_since > self._s.stall_timeout:
                raise _Stalled(f"no response for {self._s.stall_timeout:g} s")
