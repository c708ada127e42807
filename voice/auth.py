"""Who may reach which agent instance: one authorization hook for every entry point, plus built-in bearer tokens
and signed per-instance tokens a backend can mint for a browser.

An authorizer is ``fn(connection, agent, instance) -> principal`` (sync or async), where ``connection`` is the
Starlette ``Request`` or ``WebSocket`` *before* any upgrade. Return any principal (it reaches the agent as
``call.principal``); raise :class:`AuthError` (or return None/False) to refuse with 401/403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

Authorizer = Callable[[HTTPConnection, str, str], Any | Awaitable[Any]]


class AuthError(Exception):
    """A refusal: ``status`` 401 (no or bad credentials) or 403 (valid, but not for this)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Principal:
    """What the built-in authorizers return."""

    subject: str
    agent: str | None = None  # a signed token is good for one instance only
    instance: str | None = None


def presented_token(conn: HTTPConnection) -> str | None:
    """``Authorization: Bearer <token>``, or ``?token=<token>`` (browsers cannot set WebSocket headers)."""
    header = conn.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return conn.query_params.get("token") or None


def _required_token(conn: HTTPConnection) -> str:
    token = presented_token(conn)
    if token is None:
        raise AuthError(401, "authorization required")
    return token


def bearer_token(expected: str) -> Authorizer:
    """Everyone holding ``expected`` may reach every instance."""
    if not expected:
        raise ValueError("the bearer token must not be empty")
    secret = expected.encode()

    def authorize(conn: HTTPConnection, agent: str, instance: str) -> Principal:
        token = _required_token(conn)
        if not hmac.compare_digest(token.encode(), secret):
            raise AuthError(401, "invalid token")
        return Principal("api-token")

    return authorize


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_token(secret: str, agent: str, instance: str, ttl_seconds: float = 3600, subject: str = "user") -> str:
    """A token good for one (agent, instance) until it expires. Mint it in your backend, hand it to the browser."""
    payload = _b64(json.dumps({"a": agent, "i": instance, "s": subject, "e": int(time.time() + ttl_seconds)}).encode())
    signature = _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())
    return f"v1.{payload}.{signature}"


def signed_tokens(secret: str) -> Authorizer:
    """Accepts tokens from :func:`mint_token` for exactly the agent and instance they name."""
    if not secret:
        raise ValueError("the token secret must not be empty")
    key = secret.encode()

    def authorize(conn: HTTPConnection, agent: str, instance: str) -> Principal:
        token = _required_token(conn)
        try:
            version, payload, signature = token.split(".")
            expected = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
            if version != "v1" or not hmac.compare_digest(signature, expected):
                raise ValueError
            claims = json.loads(_unb64(payload))
        except ValueError:
            raise AuthError(401, "invalid token") from None
        if claims.get("e", 0) < time.time():
            raise AuthError(401, "token expired")
        if claims.get("a") != agent or claims.get("i") != instance:
            raise AuthError(403, "token is for another conversation")
        return Principal(str(claims.get("s", "user")), agent, instance)

    return authorize


def any_of(*authorizers: Authorizer) -> Authorizer:
    """The first authorizer that accepts wins; otherwise the most specific refusal (403 over 401)."""

    async def authorize(conn: HTTPConnection, agent: str, instance: str) -> Any:
        refusal = AuthError(401, "authorization required")
        for fn in authorizers:
            try:
                result = fn(conn, agent, instance)
                if hasattr(result, "__await__"):
                    result = await result
                if result:
                    return result
            except AuthError as exc:
                if exc.status >= refusal.status:
                    refusal = exc
        raise refusal

    return authorize


def from_env() -> Authorizer | None:
    """``VOICE_API_TOKEN`` (a bearer token) and/or ``VOICE_TOKEN_SECRET`` (signed per-instance tokens)."""
    found = []
    if os.environ.get("VOICE_API_TOKEN"):
        found.append(bearer_token(os.environ["VOICE_API_TOKEN"]))
    if os.environ.get("VOICE_TOKEN_SECRET"):
        found.append(signed_tokens(os.environ["VOICE_TOKEN_SECRET"]))
    if not found:
        return None
    return found[0] if len(found) == 1 else any_of(*found)


def origin_allowed(conn: HTTPConnection, allowed: tuple[str, ...]) -> bool:
    """Cross-site WebSocket hijacking guard. No ``Origin`` (not a browser): allowed. Otherwise the origin must be
    in ``allowed`` ("*" allows all), or, with an empty list, be the server's own origin."""
    origin = conn.headers.get("origin")
    if origin is None:
        return True
    if "*" in allowed:
        return True
    origin = origin.rstrip("/").lower()
    if allowed:
        return origin in {a.rstrip("/").lower() for a in allowed}
    host = conn.headers.get("host", "").lower()
    return urlsplit(origin).netloc == host
