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

import contextlib
import importlib
import logging
import os
import random
import warnings
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


def _with_scheme(url: str, secure: str, plain: str) -> str:
    """``url`` with its scheme swapped to ``secure``/``plain`` (keeping whether it was TLS)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    return f"{secure if scheme in ('https', 'wss') else plain}://{rest}"


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
        http = _with_scheme(self.base_url, "https", "http")
        ws = _with_scheme(self.base_url, "wss", "ws")
        # agent endpoints are unused here; point them at the override too so nothing leaves the chosen host
        return DeepgramClientEnvironment(base=http, production=ws, agent=ws, agent_rest=http)

    def redact(self, text: str) -> str:
        """``text`` with the API key masked (defence in depth for messages built from exceptions)."""
        if self.api_key and self.api_key in text:
            text = text.replace(self.api_key, "***")
        return text


_SDK_MODULES = (
    "deepgram.listen.v1.raw_client",
    "deepgram.listen.v2.raw_client",
    "deepgram.speak.v1.raw_client",
    "deepgram.speak.v1.audio.raw_client",
)


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
            with warnings.catch_warnings():  # the SDK imports websockets' deprecated legacy client
                warnings.simplefilter("ignore", DeprecationWarning)
                from deepgram import AsyncDeepgramClient

                for module in _SDK_MODULES:
                    importlib.import_module(module)
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
            with contextlib.suppress(Exception):  # best effort at shutdown
                await httpx_client.aclose()


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
    except Exception:  # noqa: BLE001 - defensive: an SDK object that cannot be dumped
        return None
    return data if isinstance(data, dict) else None


def backoff_delay(attempt: int, *, base: float = 0.1, cap: float = 5.0, jitter: float = 0.2) -> float:
    """Exponential backoff for reconnect ``attempt`` (1-based): base·2^(n-1), capped, with ±jitter."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return max(0.0, delay * (1 + random.uniform(-jitter, jitter)))


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

def describe_exception(exc: BaseException) -> str:
    """Short, secret-free description of why a connection ended."""
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is not None or exc.__class__.__name__.startswith("ConnectionClosed"):
        code = getattr(rcvd, "code", None) or 1006  # no close frame received: abnormal closure
        reason = (getattr(rcvd, "reason", "") or "")[:120]
        return f"closed by server (code {code}{': ' + reason if reason else ''})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    status = api_error_status(exc)
    if status is not None:
        return f"HTTP {status}"
    return f"{exc.__class__.__name__}: {str(exc)[:160]}"
