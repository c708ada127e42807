"""Deepgram Aura text-to-speech as a :class:`~voice.providers.base.TTSProvider` (``PROTOCOLS.md`` §5).

Streaming goes over the ``/v1/speak`` WebSocket: ``Speak`` (text, ≤ 2000 characters per message) then ``Flush``;
binary audio arrives until ``Flushed``. Sockets are format-fixed and everything on one socket is sequential (and
``Clear`` clears all of it), so each :meth:`AuraTTS.stream` call checks a socket out of a small per-format pool
for its exclusive use and returns it afterwards. Cancelling sends ``Clear`` and drops audio until ``Cleared``
before the socket is reused.

Limits respected: 2000 characters per ``Speak`` (longer text is split), 20 ``Flush`` per 60 s per socket (a
socket over budget is not picked; another one is opened), 60 minutes per connection (older sockets are retired).

Fallback: when the WebSocket cannot be opened, stalls before the first audio, or drops before any audio was
delivered, the same text is synthesized with REST ``POST /v1/speak`` (``container=none``). After a WebSocket
failure REST is used directly for ``ws_retry_after`` seconds.

Formats: ``pcm16`` (Deepgram ``linear16``) at 8/16/24/32/48 kHz, and ``mulaw`` at 8 or 16 kHz for telephony.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from ...audio import AudioChunk
from ..base import TTSProvider
from ._common import (
    ClientHolder,
    DeepgramAuthError,
    DeepgramConfig,
    DeepgramError,
    api_error_status,
    describe_exception,
    log,
    message_dict,
    split_text,
    status_message,
)

MAX_SPEAK_CHARS = 2000
FLUSH_LIMIT = 20
FLUSH_WINDOW_S = 60.0
MAX_SOCKET_AGE_S = 55 * 60.0  # Deepgram closes a /v1/speak socket after 60 minutes
IDLE_CLOSE_S = 120.0  # pooled sockets unused for this long are closed

_ENCODINGS = {"pcm16": "linear16", "mulaw": "mulaw"}
_FLUSHED, _CANCELLED = object(), object()


class _Closed:
    def __init__(self, reason: str) -> None:
        self.reason = reason


class _WSFailed(Exception):
    """The WebSocket path failed before any audio was delivered: fall back to REST.

    ``reused``: it happened on a pooled socket (which the server may have closed while idle): worth a retry.
    """

    def __init__(self, reason: str, *, reused: bool = False) -> None:
        super().__init__(reason)
        self.reused = reused


class _SpeakSocket:
    """One pooled ``/v1/speak`` connection and its reader task."""

    def __init__(self, sock: Any, stack: contextlib.AsyncExitStack, key: tuple[str, int]) -> None:
        self.sock = sock
        self.stack = stack
        self.key = key
        self.opened_at = time.monotonic()
        self.last_used = self.opened_at
        self.queue: asyncio.Queue | None = None  # the sink of the request using the socket
        self.dropping = False  # between Clear and Cleared
        self.cleared = asyncio.Event()
        self.flushes: deque[float] = deque()
        self.uses = 0  # completed requests
        self.dead = False
        self.reader = asyncio.create_task(self._read())

    def flush_budget(self, now: float) -> int:
        while self.flushes and now - self.flushes[0] >= FLUSH_WINDOW_S:
            self.flushes.popleft()
        return FLUSH_LIMIT - len(self.flushes)

    def usable(self, now: float) -> bool:
        return not self.dead and now - self.opened_at < MAX_SOCKET_AGE_S and self.flush_budget(now) > 0

    async def _read(self) -> None:
        reason = "closed"
        try:
            while True:
                msg = await self.sock.recv()
                if isinstance(msg, (bytes, bytearray)):
                    if not self.dropping and self.queue is not None:
                        self.queue.put_nowait(bytes(msg))
                    continue
                data = message_dict(msg) or {}
                kind = data.get("type")
                if kind == "Flushed" and not self.dropping and self.queue is not None:
                    self.queue.put_nowait(_FLUSHED)
                elif kind == "Cleared":
                    self.dropping = False
                    self.cleared.set()
                elif kind == "Warning":
                    log.warning("Deepgram Aura warning %s: %s", data.get("code"), str(data.get("description"))[:200])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a provider failure is reported, never fatal
            reason = describe_exception(exc)
        finally:
            self.dead = True
            self.cleared.set()
            if self.queue is not None:
                self.queue.put_nowait(_Closed(reason))

    async def aclose(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109 - bounds the close handshake only
        self.dead = True
        self.reader.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.stack.aclose(), timeout)


class AuraTTS(TTSProvider):
    """Deepgram Aura TTS: WebSocket streaming with a REST fallback.

    Args:
        model: Aura voice, default ``aura-2-thalia-en``.
        api_key: defaults to ``DEEPGRAM_API_KEY``; the SDK client is built on first use only.
        base_url: defaults to ``DEEPGRAM_BASE_URL`` (else Deepgram's production endpoints).
        sample_rate: default output rate for ``pcm16`` (one of 8000, 16000, 24000, 32000, 48000).
        speed: optional speaking-rate multiplier.
        use_websocket: False → REST only.
        connect_timeout: WebSocket handshake timeout.
        first_audio_timeout: seconds to wait for the first audio (WS: then fall back to REST).
        chunk_timeout: max seconds between audio chunks once audio flows.
        ws_retry_after: after a WebSocket failure, use REST for this long before trying the WebSocket again.
        max_idle_sockets: idle sockets kept per format.
    """

    sample_rate = 24_000
    formats = (
        ("pcm16", 8000),
        ("pcm16", 16000),
        ("pcm16", 24000),
        ("pcm16", 32000),
        ("pcm16", 48000),
        ("mulaw", 8000),
        ("mulaw", 16000),
    )

    def __init__(
        self,
        model: str = "aura-2-thalia-en",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        sample_rate: int = 24_000,
        speed: float | None = None,
        use_websocket: bool = True,
        connect_timeout: float = 5.0,
        first_audio_timeout: float = 5.0,
        chunk_timeout: float = 5.0,
        ws_retry_after: float = 30.0,
        max_idle_sockets: int = 4,
    ) -> None:
        if ("pcm16", sample_rate) not in self.formats:
            raise ValueError(f"unsupported Aura sample rate {sample_rate}")
        self.model = model
        self.sample_rate = sample_rate
        self.speed = speed
        self.use_websocket = use_websocket
        self.connect_timeout = connect_timeout
        self.first_audio_timeout = first_audio_timeout
        self.chunk_timeout = chunk_timeout
        self.ws_retry_after = ws_retry_after
        self.max_idle_sockets = max_idle_sockets
        self._holder = ClientHolder(DeepgramConfig(api_key, base_url))
        self._pool: dict[tuple[str, int], list[_SpeakSocket]] = {}
        self._resets: set[asyncio.Task] = set()
        self._ws_down_until = 0.0

    # --- TTSProvider ----------------------------------------------------------------------------------------

    async def synthesize(
        self, text: str, cancel: asyncio.Event | None = None, *, encoding: str = "pcm16", sample_rate: int | None = None
    ) -> AudioChunk:
        """All of ``text`` as one chunk."""
        rate = sample_rate or self._default_rate(encoding)
        parts = [c.data async for c in self.stream(text, cancel, encoding=encoding, sample_rate=rate)]
        return AudioChunk(b"".join(parts), rate, encoding)

    async def stream(
        self, text: str, cancel: asyncio.Event | None = None, *, encoding: str = "pcm16", sample_rate: int | None = None
    ) -> AsyncIterator[AudioChunk]:
        """Audio for ``text`` as it arrives (WebSocket; REST when the socket cannot be used)."""
        rate = sample_rate or self._default_rate(encoding)
        if (encoding, rate) not in self.formats:
            raise ValueError(f"Aura cannot produce {encoding} at {rate} Hz")
        text = text.strip()
        if not text or (cancel is not None and cancel.is_set()):
            return
        attempts = 3 if self.use_websocket and time.monotonic() >= self._ws_down_until else 0
        for attempt in range(1, attempts + 1):
            try:
                async with contextlib.aclosing(self._stream_ws(text, cancel, encoding, rate)) as chunks:  # type: ignore[type-var]
                    async for chunk in chunks:
                        yield chunk
                return
            except _WSFailed as exc:
                if exc.reused and attempt < attempts:
                    continue  # a stale pooled socket: try another
                self._ws_down_until = time.monotonic() + self.ws_retry_after
                log.warning("Deepgram Aura WebSocket failed (%s); using REST", exc)
                break
        async with contextlib.aclosing(self._stream_rest(text, cancel, encoding, rate)) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                yield chunk

    async def warm_up(self) -> None:
        """Open one socket for the default format (skipped without a key; failures are only logged)."""
        if not (self.use_websocket and self._holder.config.api_key):
            return
        try:
            self._release(await self._acquire("linear16", self.sample_rate))
        except Exception as exc:  # noqa: BLE001 - a provider failure is reported, never fatal
            log.warning("Deepgram Aura warm-up failed: %s", self._holder.config.redact(str(exc)))

    async def close(self) -> None:
        """Close the pooled sockets."""
        for task in list(self._resets):
            task.cancel()
        sockets = [s for pool in self._pool.values() for s in pool]
        self._pool.clear()
        await asyncio.gather(*(s.aclose() for s in sockets), return_exceptions=True)
        await self._holder.aclose()

    def _default_rate(self, encoding: str) -> int:
        return 8000 if encoding == "mulaw" else self.sample_rate

    # --- WebSocket path -------------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._resets.add(task)
        task.add_done_callback(self._resets.discard)

    async def _acquire(self, dg_encoding: str, rate: int) -> _SpeakSocket:
        """An idle pooled socket for this format with flush budget left, else a new one."""
        now = time.monotonic()
        key = (dg_encoding, rate)
        pool = self._pool.setdefault(key, [])
        for sock in list(pool):
            if sock.dead or now - sock.opened_at >= MAX_SOCKET_AGE_S or now - sock.last_used > IDLE_CLOSE_S:
                pool.remove(sock)
                self._spawn(sock.aclose())
        for sock in reversed(pool):  # most recently used first
            if sock.usable(now):
                pool.remove(sock)
                return sock
        client = self._holder.get()
        stack = contextlib.AsyncExitStack()
        query: dict[str, Any] = {"model": self.model, "encoding": dg_encoding, "sample_rate": rate}
        if self.speed is not None:
            query["speed"] = self.speed
        try:
            sock = await asyncio.wait_for(
                stack.enter_async_context(client.speak.v1.connect(**query)), self.connect_timeout
            )
        except BaseException:
            with contextlib.suppress(BaseException):
                await stack.aclose()
            raise
        return _SpeakSocket(sock, stack, key)

    def _release(self, sock: _SpeakSocket) -> None:
        """Return a socket with nothing in flight to the pool (or close it)."""
        sock.queue = None
        sock.last_used = time.monotonic()
        pool = self._pool.setdefault(sock.key, [])
        if sock.dead or len(pool) >= self.max_idle_sockets:
            self._spawn(sock.aclose())
        else:
            pool.append(sock)

    async def _stream_ws(
        self, text: str, cancel: asyncio.Event | None, encoding: str, rate: int
    ) -> AsyncIterator[AudioChunk]:
        from deepgram.speak.v1.types import SpeakV1Text

        dg_encoding = _ENCODINGS[encoding]
        try:
            sock = await self._acquire(dg_encoding, rate)
        except DeepgramAuthError:
            raise
        except Exception as exc:  # noqa: BLE001 - a provider failure is reported, never fatal
            status = api_error_status(exc)
            if status in (401, 403):
                raise DeepgramAuthError(status_message(status, "Aura TTS"), status=status) from None
            raise _WSFailed(self._holder.config.redact(describe_exception(exc))) from None
        if cancel is not None and cancel.is_set():
            self._release(sock)
            return
        queue: asyncio.Queue = asyncio.Queue()
        sock.queue = queue
        watcher = asyncio.create_task(_watch_cancel(cancel, queue)) if cancel is not None else None
        clean = delivered = False
        try:
            try:
                for piece in split_text(text, MAX_SPEAK_CHARS):
                    await sock.sock.send_text(SpeakV1Text(type="Speak", text=piece))
                await sock.sock.send_flush()
                sock.flushes.append(time.monotonic())
            except Exception as exc:  # noqa: BLE001 - a provider failure is reported, never fatal
                raise _WSFailed(describe_exception(exc), reused=sock.uses > 0) from None
            reader = _Reader(queue, self.first_audio_timeout, self.chunk_timeout, encoding)
            while True:
                item = await reader.next()
                if isinstance(item, _Closed):
                    if not delivered:
                        raise _WSFailed(item.reason, reused=sock.uses > 0)
                    log.warning("Deepgram Aura socket dropped mid-utterance (%s); audio truncated", item.reason)
                    return
                if item is _CANCELLED:
                    return
                if item is _FLUSHED:
                    clean = True
                    sock.uses += 1
                    return
                delivered = True
                yield AudioChunk(item, rate, encoding)
        except TimeoutError:
            if not delivered:
                raise _WSFailed("timed out waiting for audio") from None
            log.warning("Deepgram Aura stalled mid-utterance; audio truncated")
        finally:
            if watcher is not None:
                watcher.cancel()
            if clean:
                self._release(sock)
            else:
                self._spawn(self._reset(sock))

    async def _reset(self, sock: _SpeakSocket) -> None:
        """After a cancelled/abandoned request: ``Clear``, drop audio until ``Cleared``, then reuse the socket."""
        if sock.dead:
            await sock.aclose()
            return
        sock.queue = None
        sock.dropping = True
        sock.cleared.clear()
        try:
            await sock.sock.send_clear()
            await asyncio.wait_for(sock.cleared.wait(), 2.0)
        except asyncio.CancelledError:
            await sock.aclose()
            raise
        except Exception:  # noqa: BLE001 - a provider failure is reported, never fatal
            await sock.aclose()
            return
        self._release(sock)

    # --- REST fallback --------------------------------------------------------------------------------------

    async def _stream_rest(
        self, text: str, cancel: asyncio.Event | None, encoding: str, rate: int
    ) -> AsyncIterator[AudioChunk]:
        client = self._holder.get()
        queue: asyncio.Queue = asyncio.Queue()

        async def produce() -> None:
            try:
                for piece in split_text(text, MAX_SPEAK_CHARS):
                    kwargs: dict[str, Any] = {"text": piece, "model": self.model, "encoding": _ENCODINGS[encoding]}
                    kwargs.update(sample_rate=rate, container="none")
                    if self.speed is not None:
                        kwargs["speed"] = self.speed
                    async for data in client.speak.v1.audio.generate(**kwargs):
                        if data:
                            queue.put_nowait(bytes(data))
                queue.put_nowait(_FLUSHED)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a provider failure is reported, never fatal
                queue.put_nowait(exc)

        producer = asyncio.create_task(produce())
        watcher = asyncio.create_task(_watch_cancel(cancel, queue)) if cancel is not None else None
        try:
            reader = _Reader(queue, self.first_audio_timeout * 3, self.chunk_timeout, encoding)
            while True:
                item = await reader.next()
                if item is _FLUSHED or item is _CANCELLED:
                    return
                if isinstance(item, Exception):
                    status = api_error_status(item)
                    if status in (401, 403):
                        raise DeepgramAuthError(status_message(status, "Aura TTS"), status=status)
                    what = status_message(status, "Aura TTS") if status else describe_exception(item)
                    raise DeepgramError(self._holder.config.redact(what), status=status)
                yield AudioChunk(item, rate, encoding)
        except TimeoutError:
            raise DeepgramError("Deepgram Aura TTS (REST) timed out") from None
        finally:
            producer.cancel()
            if watcher is not None:
                watcher.cancel()


async def _watch_cancel(cancel: asyncio.Event | None, queue: asyncio.Queue) -> None:
    if cancel is not None:
        await cancel.wait()
        queue.put_nowait(_CANCELLED)


class _Reader:
    """Reads one request's queue: audio re-framed to whole samples; ``TimeoutError`` when the server stalls."""

    def __init__(self, queue: asyncio.Queue, first_timeout: float, timeout: float, encoding: str) -> None:
        self.queue = queue
        self.first_timeout = first_timeout
        self.timeout = timeout
        self.encoding = encoding
        self.first = True
        self.carry = b""

    async def next(self) -> Any:
        while True:
            async with asyncio.timeout(self.first_timeout if self.first else self.timeout):
                item = await self.queue.get()
            if not isinstance(item, (bytes, bytearray)):
                return item
            self.first = False
            if self.encoding == "pcm16":
                item = self.carry + item
                cut = len(item) - len(item) % 2
                item, self.carry = item[:cut], item[cut:]
            if item:
                return item
