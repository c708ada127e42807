"""Shared plumbing for the Deepgram providers: configuration, lazy SDK client, secrets hygiene, backoff, and the
audio replay buffer that lets a streaming session reconnect without losing speech.

Configuration comes from constructor arguments first, then the environment:

* ``DEEPGRAM_API_KEY`` — the API key (sent as ``Authorization: Token <key>`` by the official SDK).
* ``DEEPGRAM_BASE_URL`` — optional, e.g. ``http://127.0.0.1:8080`` for a local fake or a self-hosted
  deployment. The WebSocket URL is derived from it (``http`` → ``ws``, ``https`` → ``wss``). Unset: Deepgram's
  production endpoints.

The SDK client is only constructed when a provider is actually used (it raises without a key), so a library
default that merely *names* a Deepgram provider works keyless.
"""

from __future__ import annotations

import bisect
import logging
import os
import random
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("voice.providers.deepgram")

#: HTTP statuses on the handshake that no amount of retrying will fix.
FATAL_STATUSES = frozenset({400, 401, 402, 403, 404, 405, 413, 415, 422})


class DeepgramError(RuntimeError):
    """A Deepgram request failed. The message never contains the API key."""

    def __init__(self, message: str, *, status: int | None = None, fatal: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.fatal = fatal


class DeepgramAuthError(DeepgramError):
    """Deepgram rejected the credentials (HTTP 401/403), or none were configured."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status, fatal=True)


def status_message(status: int, what: str) -> str:
    """A human message for a handshake/HTTP status (no secrets: only the status and what was attempted)."""
    if status == 401:
        return f"Deepgram rejected the API key for {what} (HTTP 401): check DEEPGRAM_API_KEY"
    if status == 403:
        return f"Deepgram refused access for {what} (HTTP 403): the key lacks permission for this model/feature"
    if status == 402:
        return f"Deepgram refused {what} (HTTP 402): the project has insufficient credits"
    if status == 429:
        return f"Deepgram rate-limited {what} (HTTP 429)"
    if status == 400:
        return f"Deepgram rejected the parameters of {what} (HTTP 400)"
    return f"Deepgram {what} failed (HTTP {status})"


def api_error_status(exc: BaseException) -> int | None:
    """The HTTP status of an SDK ``ApiError`` (or anything with ``status_code``), else None.

    Never format an ``ApiError`` itself: the SDK stores the *request* headers, including ``Authorization``, in it.
    """
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _ws_from_http(url: str) -> str:
    if url.startswith("https://"):
        return "wss://" + url[len("https://") :]
    if url.startswith("http://"):
        return "ws://" + url[len("http://") :]
    return url


def _http_from_ws(url: str) -> str:
    if url.startswith("wss://"):
        return "https://" + url[len("wss://") :]
    if url.startswith("ws://"):
        return "http://" + url[len("ws://") :]
    return url


@dataclass
class DeepgramConfig:
    """Resolved connection settings. ``api_key``/``base_url`` fall back to ``DEEPGRAM_API_KEY``/``DEEPGRAM_BASE_URL``.

    The key is kept out of ``repr`` so it cannot leak through logs of provider objects.
    """

    api_key: str | None = None
    base_url: str | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.api_key is None:
            self.api_key = os.environ.get("DEEPGRAM_API_KEY") or None
        if self.base_url is None:
            self.base_url = os.environ.get("DEEPGRAM_BASE_URL") or None
        if self.base_url:
            self.base_url = self.base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"DeepgramConfig(api_key={'***' if self.api_key else None}, base_url={self.base_url!r})"

    def environment(self) -> Any:
        """The SDK ``DeepgramClientEnvironment`` (production unless ``base_url`` is set)."""
        from deepgram import DeepgramClientEnvironment

        if not self.base_url:
            return DeepgramClientEnvironment.PRODUCTION
        http = _http_from_ws(self.base_url)
        ws = _ws_from_http(self.base_url)
        # agent endpoints are unused here; point them at the override too so nothing leaves the chosen host
        return DeepgramClientEnvironment(base=http, production=ws, agent=ws, agent_rest=http)

    def redact(self, text: str) -> str:
        """``text`` with the API key masked (defence in depth for messages built from exceptions)."""
        if self.api_key and self.api_key in text:
            text = text.replace(self.api_key, "***")
        return text


class ClientHolder:
    """Builds the official ``AsyncDeepgramClient`` on first use and caches it.

    Construction is deferred because the SDK raises without a key; :meth:`get` raises :class:`DeepgramAuthError`
    with a clear message instead.
    """

    def __init__(self, config: DeepgramConfig) -> None:
        self.config = config
        self._client: Any = None

    def get(self) -> Any:
        if self._client is None:
            if not self.config.api_key:
                raise DeepgramAuthError("DEEPGRAM_API_KEY is not set (pass api_key= or set the environment variable)")
            from deepgram import AsyncDeepgramClient

            self._client = AsyncDeepgramClient(
                api_key=self.config.api_key,
                environment=self.config.environment(),
                timeout=self.config.timeout,
            )
        return self._client

    async def aclose(self) -> None:
        """Close the SDK's HTTP connection pool, if one was created."""
        client, self._client = self._client, None
        if client is None:
            return
        wrapper = getattr(client, "_client_wrapper", None)
        httpx_client = getattr(getattr(wrapper, "httpx_client", None), "httpx_client", None)
        if httpx_client is not None:
            try:
                await httpx_client.aclose()
            except Exception:  # pragma: no cover - best effort at shutdown
                pass


def message_dict(msg: Any) -> dict | None:
    """Normalize what the SDK socket clients return (pydantic model, dict, bytes or None) to a plain dict.

    Dispatch on ``msg["type"]``: the SDK's union parsing may pick a sibling class for look-alike messages (e.g.
    ``Cleared`` parsed as ``SpeakV1Flushed``) but keeps every field, including ``type``.
    """
    if msg is None or isinstance(msg, (bytes, bytearray)):
        return None
    if isinstance(msg, dict):
        return msg
    dump = getattr(msg, "model_dump", None) or getattr(msg, "dict", None)
    try:
        data = dump() if dump else None
    except Exception:  # pragma: no cover - defensive
        return None
    return data if isinstance(data, dict) else None


def backoff_delay(attempt: int, *, base: float = 0.1, cap: float = 5.0, jitter: float = 0.2) -> float:
    """Exponential backoff for reconnect ``attempt`` (1-based): base·2^(n-1), capped, with ±jitter."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return max(0.0, delay * (1 + random.uniform(-jitter, jitter)))


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
        if over > 0:
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
        return bytes(self._data[lo : lo + max_bytes])

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


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` characters, preferring sentence then word boundaries."""
    text = text.strip()
    pieces: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = max(window.rfind(". "), window.rfind("? "), window.rfind("! "))
        if cut < limit // 2:
            cut = window.rfind(" ")
        cut = cut + 1 if cut > 0 else limit
        pieces.append(text[:cut].strip())
        text = text[cut:].strip()
    if text:
        pieces.append(text)
    return pieces
