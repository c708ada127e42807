"""Where the model is: settings from the agent class and the environment, one shared ``AsyncOpenAI`` client per
configuration, and failures described for the log without the API key.

Environment: ``VOICE_LLM_URL`` (an OpenAI-compatible base URL, e.g. ``http://127.0.0.1:11434/v1`` for Ollama; unset:
OpenAI), ``VOICE_LLM_MODEL``, ``VOICE_LLM_API_KEY`` (falling back to ``OPENAI_API_KEY``).
"""

from __future__ import annotations

import asyncio
import os
import weakref
from dataclasses import dataclass
from types import ModuleType
from typing import Any

ENV_URL = "VOICE_LLM_URL"
ENV_MODEL = "VOICE_LLM_MODEL"
ENV_API_KEY = "VOICE_LLM_API_KEY"
DEFAULT_MODEL = "gpt-4o-mini"
#: sent when no key is configured: the SDK insists on one, keyless servers (Ollama, llama.cpp) ignore it
NO_KEY = "no-key"


class MissingOpenAI(ImportError):
    """The ``openai`` package is not installed."""

    def __init__(self) -> None:
        super().__init__("the LLM agent needs the openai package: pip install 'voice[openai]'")


def require_openai() -> ModuleType:
    """The ``openai`` module, or :class:`MissingOpenAI` naming the extra to install."""
    try:
        import openai
    except ImportError as exc:
        raise MissingOpenAI() from exc
    return openai


@dataclass(frozen=True)
class LLMSettings:
    """Everything that identifies a client; one ``AsyncOpenAI`` is shared per distinct value (and event loop)."""

    base_url: str | None
    api_key: str
    model: str
    timeout: float
    max_retries: int

    @classmethod
    def resolve(
        cls, *, base_url: str | None, api_key: str | None, model: str | None, timeout: float, max_retries: int
    ) -> LLMSettings:
        """Explicit values first, then ``VOICE_LLM_URL`` / ``VOICE_LLM_API_KEY`` (or ``OPENAI_API_KEY``) /
        ``VOICE_LLM_MODEL``; an unset URL means the SDK's default (``OPENAI_BASE_URL`` or OpenAI)."""
        return cls(
            base_url=base_url or os.environ.get(ENV_URL) or None,
            api_key=api_key or os.environ.get(ENV_API_KEY) or os.environ.get("OPENAI_API_KEY") or NO_KEY,
            model=model or os.environ.get(ENV_MODEL) or DEFAULT_MODEL,
            timeout=timeout,
            max_retries=max_retries,
        )


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[LLMSettings, Any]] = weakref.WeakKeyDictionary()


def get_client(settings: LLMSettings) -> Any:
    """The shared ``openai.AsyncOpenAI`` for ``settings`` on the running event loop (its connection pool belongs
    to the loop)."""
    openai = require_openai()
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    client = per_loop.get(settings)
    if client is None:
        client = openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
        )
        per_loop[settings] = client
        _ = client.chat.completions  # the SDK imports and builds its chat types here (~90 ms), not in a turn
    return client


def describe_error(exc: BaseException, api_key: str | None = None) -> str:
    """A one-line reason for the log: the kind of failure, the HTTP status and the server's message, with the API
    key (should a server echo it) masked."""
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    cause = exc.__cause__
    if isinstance(exc, TimeoutError):
        message = "no response in time"
    elif cause is not None and not status:
        message = f"{message} ({type(cause).__name__}: {cause})"
    text = f"{type(exc).__name__}" + (f" HTTP {status}" if status else "") + f": {message}"
    if api_key and api_key != NO_KEY:
        text = text.replace(api_key, "***")
    return " ".join(text.split())[:500]
