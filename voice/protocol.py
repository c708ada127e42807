"""The client wire protocol (``@cloudflare/voice`` v1 plus extensions), as pure parsing and validation.

Nothing here does I/O: :func:`parse_client_message` turns a text frame into a :class:`ClientMessage` or raises
:class:`ProtocolError` with a message fit for an ``error`` reply. See docs/protocol.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PROTOCOL_VERSION = 1

# Close codes this server uses (documented in docs/protocol.md).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # server shutting down: reconnect elsewhere
CLOSE_POLICY = 1008  # flooding or repeated protocol abuse
CLOSE_TOO_BIG = 1009  # a frame larger than the transport's hard limit
CLOSE_UNKNOWN_AGENT = 4404
CLOSE_IDLE = 4408  # no audio and no message for idle_timeout_seconds

#: message types the server sends; an app's own messages (``call.send_json``) must use other types
SERVER_TYPES = frozenset(
    {"welcome", "status", "audio_config", "transcript_interim", "transcript", "transcript_start", "transcript_delta",
     "transcript_end", "playback_interrupt", "playback_pause", "playback_resume", "metrics", "error"}
)

CLIENT_TYPES = frozenset(
    {"hello", "start_call", "end_call", "interrupt", "text_message", "start_of_speech", "end_of_speech", "playback_ack"}
)


class ProtocolError(ValueError):
    """A client message that cannot be accepted. ``code`` is a stable machine-readable reason."""

    def __init__(self, message: str, code: str = "bad_message") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ClientMessage:
    """A validated client message (``raw`` is the whole JSON object)."""
    type: str
    text: str | None = None  # text_message
    preferred_format: str | None = None  # start_call
    played_samples: int | None = None  # playback_ack
    raw: dict[str, Any] | None = None


def parse_client_message(frame: str, max_text_chars: int) -> ClientMessage:
    """Validate one JSON text frame from a client."""
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):
        raise ProtocolError("malformed JSON", "bad_json") from None
    if not isinstance(data, dict):
        raise ProtocolError("a message must be a JSON object", "bad_message")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("a message needs a string 'type'", "bad_message")
    if kind not in CLIENT_TYPES:
        return ClientMessage(kind, raw=data)  # the app's own: for the agent's on_message
    if kind == "text_message":
        text = data.get("text")
        if not isinstance(text, str):
            raise ProtocolError("text_message needs a string 'text'", "bad_field")
        if len(text) > max_text_chars:
            raise ProtocolError(f"text_message longer than {max_text_chars} characters", "too_long")
        return ClientMessage(kind, text=text, raw=data)
    if kind == "start_call":
        fmt = data.get("preferred_format")
        if fmt is not None and not isinstance(fmt, str):
            raise ProtocolError("preferred_format must be a string", "bad_field")
        return ClientMessage(kind, preferred_format=fmt, raw=data)
    if kind == "playback_ack":
        played = data.get("played_samples")
        if not isinstance(played, int) or isinstance(played, bool) or played < 0:
            raise ProtocolError("playback_ack needs a non-negative integer 'played_samples'", "bad_field")
        return ClientMessage(kind, played_samples=played, raw=data)
    if kind == "hello":
        version = data.get("protocol_version", PROTOCOL_VERSION)
        if not isinstance(version, int) or isinstance(version, bool):
            raise ProtocolError("protocol_version must be an integer", "bad_field")
    return ClientMessage(kind, raw=data)


# --- server messages: small constructors so every sender spells them the same way ---------------------------


def welcome() -> dict[str, Any]:
    """The first message on every connection."""
    return {"type": "welcome", "protocol_version": PROTOCOL_VERSION}


def status(value: str) -> dict[str, Any]:
    """The call's status changed."""
    return {"type": "status", "status": value}


def error(message: str, code: str | None = None) -> dict[str, Any]:
    """Something was refused or failed; ``code`` is stable and machine-readable."""
    out: dict[str, Any] = {"type": "error", "message": message}
    if code:
        out["code"] = code
    return out
