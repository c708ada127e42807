"""Server settings: constructor arguments, with environment variables as defaults (the README's table)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

T = TypeVar("T")


def _env(name: str, default: T, cast: Callable[[str], T]) -> T:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return cast(value)
    except ValueError:
        kind = getattr(cast, "__name__", "value")
        raise ValueError(f"environment variable {name}={value!r} is not a valid {kind}") from None


def _origins(value: str) -> tuple[str, ...]:
    return tuple(o.strip() for o in value.split(",") if o.strip())


def _phrases(value: str) -> tuple[str, ...] | None:
    return tuple(p.strip().lower() for p in value.split(",") if p.strip()) or None


def _seconds_or_off(value: str) -> float | None:
    if value.strip().lower() in ("off", "none", "0"):
        return None
    return float(value)


@dataclass(frozen=True)
class ChunkerConfig:
    """Chunk sizes in characters."""

    min_chars: int = 24  # shorter sentences are merged with the next one
    first_min_chars: int = 6  # the first chunk may be this short, to start audio sooner
    max_chars: int = 220  # longer run-ons are split at a comma, else a space
    first_max_chars: int = 90  # the first chunk splits at a comma sooner
    first_clause_chars: int = 8  # the first chunk may end at a clause break (", " "; " ": ") this long; 0: never


@dataclass(frozen=True)
class Settings:
    """Every knob of the server. Build with ``Settings.from_env(**overrides)``."""

    db_path: str = "voice.db"  # VOICE_DB: the SQLite file (one process, or several on one host)
    database_url: str | None = None  # VOICE_DATABASE_URL: postgresql://… (several processes on one database)
    history_limit: int = 20  # VOICE_HISTORY_LIMIT: messages in ctx.messages
    history_cache: int = 50  # recent messages kept in memory per live instance (at least history_limit)
    max_messages_per_instance: int = 1000  # VOICE_MAX_MESSAGES: retention in SQLite (0: keep all)
    output_sample_rate: int = 16_000  # VOICE_OUTPUT_RATE: pcm16 rate sent to WebSocket clients
    max_frame_bytes: int = 64 * 1024  # VOICE_MAX_FRAME_BYTES: larger audio frames are refused
    max_text_chars: int = 4000  # VOICE_MAX_TEXT_CHARS: text_message limit
    max_message_bytes: int = 16 * 1024  # a JSON message larger than this is refused
    messages_per_second: float = 20.0  # VOICE_MESSAGE_RATE: sustained JSON messages per connection
    message_burst: int = 100  # burst allowance
    audio_realtime_factor: float = 3.0  # sustained audio faster than real time by this factor is dropped
    audio_burst_seconds: float = 30.0  # burst allowance for audio
    abuse_close_after: int = 1000  # refused messages before the connection is closed (1008)
    max_outbound_messages: int = 4096  # queued messages to a client that does not read before closing it (1008)
    max_outbound_bytes: int = 16 * 1024 * 1024  # ... or queued bytes (about 8 minutes of 16 kHz audio)
    preconnect_audio_seconds: float = 30.0  # audio buffered while the STT session starts
    tts_lookahead: int = 2  # sentences synthesized ahead of the one playing
    tts_timeout_seconds: float = 15.0  # a TTS chunk that takes longer is given up (error tts_failed), the reply goes on
    ack_wait_seconds: float = 0.3  # after a barge-in, how long to wait for the client's playback report
    max_connections: int = 500  # VOICE_MAX_CONNECTIONS: concurrent calls/connections per process (503 beyond)
    max_connections_per_client: int = 20  # VOICE_MAX_CONNECTIONS_PER_CLIENT: per client address (429 beyond)
    max_call_seconds: float = 3600.0  # VOICE_MAX_CALL_SECONDS: a call longer than this is ended
    idle_timeout_seconds: float = 300.0  # VOICE_IDLE_TIMEOUT: no audio and no message this long closes (4408)
    drain_seconds: float = 10.0  # VOICE_DRAIN_SECONDS: on shutdown, how long in-flight turns may finish
    schedule_attempts: int = 3  # runs of a schedule that raises before it is kept as failed
    schedule_retry_seconds: float = 5.0  # delay before the first retry of a schedule that raised (doubles each time)
    allowed_origins: tuple[str, ...] = ()  # VOICE_ALLOWED_ORIGINS (comma-separated); empty: same origin only
    chunker: ChunkerConfig = field(default_factory=ChunkerConfig)
    # turn-taking (docs/turn-taking.md); times in seconds
    backchannels: tuple[str, ...] | None = None  # VOICE_BACKCHANNELS (comma-separated); None: the call language's set
    endpoint_min: float = 0.25  # silence that ends a turn that sounds complete
    endpoint: float = 0.385  # VOICE_ENDPOINT: ... one the detector has no opinion on (> the 350 ms pauses in a clause)
    endpoint_unsure: float = 1.3  # ... one that probably goes on ("Where are you from?" / "...the weather in")
    endpoint_max: float = 2.5  # VOICE_ENDPOINT_MAX: ... one that surely goes on ("remind me to…", "um")
    interrupt_after: float = 0.7  # speech over the agent this long takes the floor even before a word is known
    resume_after: float = 0.4  # speech over the agent that stopped without a word: play on after this silence
    user_idle_seconds: float | None = None  # VOICE_USER_IDLE_SECONDS: on_user_idle after this silence (None: off)

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Defaults, then the environment, then ``overrides`` (None values are ignored)."""
        base = cls(
            db_path=_env("VOICE_DB", cls.db_path, str),
            database_url=_env("VOICE_DATABASE_URL", cls.database_url, str),
            history_limit=_env("VOICE_HISTORY_LIMIT", cls.history_limit, int),
            max_messages_per_instance=_env("VOICE_MAX_MESSAGES", cls.max_messages_per_instance, int),
            output_sample_rate=_env("VOICE_OUTPUT_RATE", cls.output_sample_rate, int),
            max_frame_bytes=_env("VOICE_MAX_FRAME_BYTES", cls.max_frame_bytes, int),
            max_text_chars=_env("VOICE_MAX_TEXT_CHARS", cls.max_text_chars, int),
            messages_per_second=_env("VOICE_MESSAGE_RATE", cls.messages_per_second, float),
            max_connections=_env("VOICE_MAX_CONNECTIONS", cls.max_connections, int),
            max_connections_per_client=_env("VOICE_MAX_CONNECTIONS_PER_CLIENT", cls.max_connections_per_client, int),
            max_call_seconds=_env("VOICE_MAX_CALL_SECONDS", cls.max_call_seconds, float),
            idle_timeout_seconds=_env("VOICE_IDLE_TIMEOUT", cls.idle_timeout_seconds, float),
            drain_seconds=_env("VOICE_DRAIN_SECONDS", cls.drain_seconds, float),
            allowed_origins=_env("VOICE_ALLOWED_ORIGINS", cls.allowed_origins, _origins),
            backchannels=_env("VOICE_BACKCHANNELS", cls.backchannels, _phrases),
            endpoint=_env("VOICE_ENDPOINT", cls.endpoint, float),
            endpoint_max=_env("VOICE_ENDPOINT_MAX", cls.endpoint_max, float),
            user_idle_seconds=_env("VOICE_USER_IDLE_SECONDS", cls.user_idle_seconds, _seconds_or_off),
        )
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})
