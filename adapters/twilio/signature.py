"""Twilio request signatures (``X-Twilio-Signature``), checked with twilio-python's :class:`RequestValidator`.

* Voice webhook (HTTP POST): the signed string is the full URL Twilio requested (our configured public URL + path
  + query) followed by the sorted form parameters.
* Media Stream WebSocket upgrade: the header arrives lower-case (``x-twilio-signature``) and signs the ``wss://``
  URL exactly as written in the TwiML, with no parameters.

URLs are always built from the configured public URL, never from ``Host``/``X-Forwarded-*`` headers, which the
caller controls. Also here: a per-call token (HMAC of agent, instance and CallSid) that the webhook puts in the
TwiML ``<Parameter>``s and the stream checks in ``start``, so a captured (static) WebSocket signature cannot be
replayed to reach another instance's history.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from twilio.request_validator import RequestValidator

__all__ = [
    "FormParams",
    "call_token",
    "check_call_token",
    "http_url",
    "parse_form",
    "stream_url",
    "valid_signature",
]


class FormParams:
    """Form parameters with repeats, in the ``getall`` shape :class:`RequestValidator` understands."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._items: dict[str, list[str]] = {}
        for name, value in pairs:
            self._items.setdefault(name, []).append(value)

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def getall(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        return list(self._items[name])

    def get(self, name: str, default: str = "") -> str:
        """The first value of ``name`` (``default`` if absent)."""
        values = self._items.get(name)
        return values[0] if values else default


def parse_form(body: bytes) -> FormParams:
    """An ``application/x-www-form-urlencoded`` body (blank values kept, as Twilio signs them)."""
    return FormParams(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _base(public_url: str) -> tuple[str, str, str]:
    parts = urlsplit(public_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"public URL must be an absolute http(s) URL, got {public_url!r}")
    return parts.scheme, parts.netloc, parts.path.rstrip("/")


def http_url(public_url: str, path: str, query: str = "") -> str:
    """The URL Twilio requested for a webhook: public base + ``path`` (+ ``?query``)."""
    scheme, netloc, base = _base(public_url)
    return urlunsplit((scheme, netloc, base + path, query, ""))


def stream_url(public_url: str, path: str) -> str:
    """The ``<Stream url>`` for ``path``: https→wss, http→ws (plain ws is only useful for local testing)."""
    scheme, netloc, base = _base(public_url)
    return urlunsplit(("wss" if scheme == "https" else "ws", netloc, base + path, "", ""))


def valid_signature(auth_token: str, url: str, params: FormParams | dict | None, signature: str | None) -> bool:
    """Whether ``signature`` is Twilio's for ``url`` and ``params`` (twilio-python also tries default ports)."""
    if not signature or not auth_token:
        return False
    try:
        return bool(RequestValidator(auth_token).validate(url, params or {}, signature))
    except Exception:  # noqa: BLE001 - a malformed header or URL is simply not valid
        return False


def call_token(auth_token: str, agent: str, instance: str, call_sid: str) -> str:
    """A per-call token binding the agent instance to the call (goes into the TwiML as a ``<Parameter>``)."""
    message = f"voice-twilio\n{agent}\n{instance}\n{call_sid}".encode()
    digest = hmac.new(auth_token.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def check_call_token(auth_token: str, agent: str, instance: str, call_sid: str, token: str | None) -> bool:
    """Constant-time check of :func:`call_token`."""
    if not token:
        return False
    return hmac.compare_digest(call_token(auth_token, agent, instance, call_sid), token)
