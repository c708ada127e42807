"""Twilio Media Streams events, both ways, as pure values (reference §1): text frame → :data:`TwilioEvent` (or a
:class:`Dropped` saying why not), and the JSON of what we send (``media``, ``mark``, ``clear``). No I/O."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

MAX_EVENT_CHARS = 1 << 20  # a JSON event larger than this is dropped (Twilio's are ~300 bytes)
DTMF_DIGITS = frozenset("0123456789*#ABCD")


@dataclass(frozen=True)
class Connected:
    """The socket is up (``connected``)."""

    protocol: str | None = None


@dataclass(frozen=True)
class Start:
    """The stream starts (``start``): its ids and the ``<Parameter>``s of our TwiML."""

    stream_sid: str
    call_sid: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    account_sid: str = ""


@dataclass(frozen=True)
class Media:
    """Caller audio (``media`` on the inbound track): μ-law 8 kHz."""

    stream_sid: str | None
    mulaw: bytes


@dataclass(frozen=True)
class Mark:
    """A ``mark`` we sent was played (or cleared)."""

    stream_sid: str | None
    name: str


@dataclass(frozen=True)
class Dtmf:
    """A keypad digit (``dtmf``)."""

    stream_sid: str | None
    digit: str


@dataclass(frozen=True)
class Stop:
    """The stream ends (``stop``)."""

    stream_sid: str | None


@dataclass(frozen=True)
class Dropped:
    """A frame we ignore, and why (logged, counted; a bad frame never ends a phone call)."""

    reason: str
    quiet: bool = False  # expected now and then: debug level


TwilioEvent = Connected | Start | Media | Mark | Dtmf | Stop


def _field(data: dict[str, Any], obj: str, key: str) -> Any:
    inner = data.get(obj)
    return inner.get(key) if isinstance(inner, dict) else None


def parse(text: str) -> TwilioEvent | Dropped:
    """One text frame from Twilio."""
    if len(text) > MAX_EVENT_CHARS:
        return Dropped("oversized event")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return Dropped("malformed JSON")
    if not isinstance(data, dict):
        return Dropped("not an object")
    event = data.get("event")
    sid = data.get("streamSid") if isinstance(data.get("streamSid"), str) else None
    if event == "media":
        return _media(data, sid)
    if event == "mark":
        name = _field(data, "mark", "name")
        return Mark(sid, name) if isinstance(name, str) else Dropped("mark without a name")
    if event == "dtmf":
        digit = _field(data, "dtmf", "digit")
        if not isinstance(digit, str) or len(digit) != 1 or digit not in DTMF_DIGITS:
            return Dropped("dtmf without a valid digit")
        return Dtmf(sid, digit)
    if event == "start":
        return _start(data)
    if event == "stop":
        return Stop(sid)
    if event == "connected":
        return Connected(data.get("protocol") if isinstance(data.get("protocol"), str) else None)
    return Dropped("unknown event", quiet=True)


def _media(data: dict[str, Any], sid: str | None) -> Media | Dropped:
    media = data.get("media")
    if not isinstance(media, dict):
        return Dropped("media without a media object")
    if media.get("track", "inbound") not in ("inbound", "inbound_track"):
        return Dropped("media on another track", quiet=True)
    payload = media.get("payload")
    if not isinstance(payload, str) or not payload:
        return Dropped("media without a payload")
    try:
        return Media(sid, base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        return Dropped("media payload is not base64")


def _start(data: dict[str, Any]) -> Start | Dropped:
    start: dict[str, Any] = data["start"] if isinstance(data.get("start"), dict) else {}
    stream_sid = start.get("streamSid") or data.get("streamSid")
    if not isinstance(stream_sid, str) or not stream_sid:
        return Dropped("start without streamSid")
    call_sid = start["callSid"] if isinstance(start.get("callSid"), str) else ""
    account_sid = start["accountSid"] if isinstance(start.get("accountSid"), str) else ""
    raw = start.get("customParameters")
    parameters = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    return Start(stream_sid, call_sid, parameters, account_sid)


# --- what we send -------------------------------------------------------------------------------------------------


def media(stream_sid: str, mulaw: bytes) -> dict[str, Any]:
    """Agent audio for the caller."""
    return {"event": "media", "streamSid": stream_sid, "media": {"payload": base64.b64encode(mulaw).decode("ascii")}}


def mark(stream_sid: str, name: str) -> dict[str, Any]:
    """Ask Twilio to echo ``name`` once the audio sent before it has played."""
    return {"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}


def clear(stream_sid: str) -> dict[str, Any]:
    """Drop the audio Twilio has buffered (barge-in)."""
    return {"event": "clear", "streamSid": stream_sid}
