"""Admission control for every entry point: authorization, the Origin check, connection limits and draining.

Transports ask :meth:`Gate.admit` before they accept anything (before a WebSocket upgrade, before WebRTC
signaling), so a refused client never gets to send audio.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from ..auth import AuthError, Authorizer, origin_allowed
from ..config import Settings

log = logging.getLogger("voice.gate")

#: ``/readyz`` says 503 once this share of ``max_connections`` is taken, so a balancer sends new calls elsewhere
#: while the last slots still take the few that were already on their way
READY_BELOW = 0.9


@dataclass
class Refusal(Exception):
    """Why a connection was not admitted: an HTTP status and a message safe to show."""

    status: int
    message: str


class Gate:
    """Admission for every entry point: authorization, Origin, connection counts, draining."""

    def __init__(self, settings: Settings, authorize: Authorizer | None) -> None:
        self.settings = settings
        self.authorize = authorize
        self.draining = False
        self.active = 0
        self._per_client: Counter[str] = Counter()

    async def check(self, conn: HTTPConnection, agent: str, instance: str, *, browser_origin: bool = False) -> Any:
        """Authorize one request (no slot taken). Returns the principal or raises :class:`Refusal`."""
        if browser_origin and not origin_allowed(conn, self.settings.allowed_origins):
            raise Refusal(403, "origin not allowed")
        if self.authorize is None:
            return None
        try:
            principal = self.authorize(conn, agent, instance)
            if inspect.isawaitable(principal):
                principal = await principal
        except AuthError as exc:
            raise Refusal(exc.status, exc.message) from None
        if not principal:
            raise Refusal(403, "forbidden")
        return principal

    async def admit(self, conn: HTTPConnection, agent: str, instance: str) -> tuple[Any, str]:
        """Authorize a long-lived connection and take a slot; pair with :meth:`leave`. Returns (principal, client)."""
        if self.draining:
            raise Refusal(503, "server is shutting down")
        principal = await self.check(conn, agent, instance, browser_origin=True)
        client = conn.client.host if conn.client else "unknown"
        self.take(client)
        return principal, client

    def take(self, client: str | None = None) -> None:
        """Take a slot for a connection (pair with :meth:`leave`), or raise :class:`Refusal`. ``client`` None: one
        authorized otherwise that has no per-address limit (a phone stream: every one comes from Twilio)."""
        if self.draining:
            raise Refusal(503, "server is shutting down")
        if self.active >= self.settings.max_connections:
            raise Refusal(503, "server is at capacity")
        if client is not None:
            if self._per_client[client] >= self.settings.max_connections_per_client:
                raise Refusal(429, "too many connections from this address")
            self._per_client[client] += 1
        self.active += 1

    def leave(self, client: str | None) -> None:
        """A connection admitted by :meth:`admit` (or :meth:`take`) ended: free its slot."""
        self.active -= 1
        if client is None:
            return
        self._per_client[client] -= 1
        if self._per_client[client] <= 0:
            del self._per_client[client]

    @property
    def ready(self) -> bool:
        """Whether to take new connections: not draining, and under :data:`READY_BELOW` of ``max_connections``."""
        return not self.draining and self.active < self.settings.max_connections * READY_BELOW
