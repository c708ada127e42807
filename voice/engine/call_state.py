"""A call's lifecycle as data (h11's ``_state.py`` is the model): the states, and which state may follow which.

    IDLE ──start_call──▶ STARTING ──approved, STT open──▶ ACTIVE ──end_call──▶ IDLE      any ──▶ CLOSED
                           └──rejected / STT failed──▶ IDLE

:class:`~voice.engine.call.Call` makes every change through this table and refuses any other.
"""

from __future__ import annotations

import enum


class CallState(enum.Enum):
    """Where a connection's call is in its life."""

    IDLE = "idle"  # connected, no call
    STARTING = "starting"  # start_call accepted: being approved, the STT session opening (audio is buffered)
    ACTIVE = "active"  # in a call
    CLOSED = "closed"  # the connection is gone


TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    CallState.IDLE: frozenset({CallState.STARTING, CallState.CLOSED}),
    CallState.STARTING: frozenset({CallState.ACTIVE, CallState.IDLE, CallState.CLOSED}),
    CallState.ACTIVE: frozenset({CallState.IDLE, CallState.CLOSED}),
    CallState.CLOSED: frozenset(),
}
