"""What crosses processes: small notices on named channels ("speak this stored text on instance X", "a schedule was
added"), published by one process and delivered to the subscribers of every process.

:class:`Bus` is the interface; :class:`LocalBus` is the one-process bus (delivers to this process's subscribers only,
costs nothing); :class:`~voice.history.postgres_bus.PostgresBus` carries notices between processes over PostgreSQL's
``LISTEN/NOTIFY``.

A notice is a JSON object of at most :data:`MAX_PAYLOAD_BYTES` (PostgreSQL's ``NOTIFY`` limit, enforced by every bus
so code that works on one works on all): carry ids and let the receiver read the rest from the store. Delivery is at
most once: a notice published while a receiver is disconnected is lost to it, so receivers treat a notice as a hint
and the store as the truth.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from .._aio import TaskSet, log

#: a subscriber gets each notice's payload; it may be sync or async (then it runs as its own task)
Callback = Callable[[dict[str, Any]], Any]

MAX_PAYLOAD_BYTES = 7999
MAX_CHANNEL_BYTES = 63


def encode(channel: str, payload: dict[str, Any]) -> str:
    """The notice as it travels; ValueError if the channel name or the payload cannot."""
    if not channel or len(channel.encode()) > MAX_CHANNEL_BYTES:
        raise ValueError(f"a channel name is 1 to {MAX_CHANNEL_BYTES} bytes: {channel!r}")
    if not isinstance(payload, dict):
        raise TypeError(f"a notice is a JSON object, not {type(payload).__name__}")
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    if len(data.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"a notice is at most {MAX_PAYLOAD_BYTES} bytes of JSON ({len(data.encode())}): "
                         "send ids, not text")
    return data


class Bus(ABC):
    """Publish notices to every process's subscribers of a channel. Subscribers of the publishing process get its own
    notices too, exactly once."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Callback]] = {}
        self._tasks = TaskSet("bus")

    async def start(self) -> None:  # noqa: B027 - optional
        """Connect (if the bus needs to)."""

    async def close(self) -> None:
        """Stop delivering; cancel subscribers still running. Idempotent."""
        self._subscribers.clear()
        await self._tasks.cancel_all()

    @abstractmethod
    async def publish(self, channel: str, payload: dict[str, Any]) -> None:
        """Send ``payload`` (a JSON object, ≤ :data:`MAX_PAYLOAD_BYTES`) to ``channel``'s subscribers everywhere."""

    async def subscribe(self, channel: str, callback: Callback) -> None:
        """Call ``callback(payload)`` for every later notice on ``channel`` (from any process, this one included)."""
        encode(channel, {})
        callbacks = self._subscribers.setdefault(channel, [])
        callbacks.append(callback)
        if len(callbacks) == 1:
            await self._listen(channel)

    async def unsubscribe(self, channel: str, callback: Callback) -> None:
        """Stop calling ``callback`` for ``channel``; unknown pairs are ignored."""
        callbacks = self._subscribers.get(channel, [])
        if callback in callbacks:
            callbacks.remove(callback)
            if not callbacks:
                del self._subscribers[channel]
                await self._unlisten(channel)

    async def _listen(self, channel: str) -> None:  # noqa: B027 - optional
        """The first subscriber of ``channel`` arrived."""

    async def _unlisten(self, channel: str) -> None:  # noqa: B027 - optional
        """The last subscriber of ``channel`` left."""

    def _deliver(self, channel: str, data: str) -> None:
        """Hand one notice to each subscriber (a copy each: one cannot change what the next one sees)."""
        try:
            is_object = isinstance(json.loads(data), dict)
        except ValueError:
            is_object = False
        if not is_object:
            log.warning("dropped a notice on %r that is not a JSON object: %.200s", channel, data)
            return
        for callback in list(self._subscribers.get(channel, ())):
            try:
                result = callback(json.loads(data))
                if asyncio.iscoroutine(result):
                    self._tasks.spawn(result, name=f"bus {channel}")
            except Exception:  # noqa: BLE001 - one subscriber's bug must not keep the notice from the others
                log.exception("subscriber of %r failed on %.200s", channel, data)


class LocalBus(Bus):
    """One process: notices reach this process's subscribers, soon after :meth:`publish` returns."""

    async def publish(self, channel: str, payload: dict[str, Any]) -> None:
        """Deliver ``payload`` to this process's subscribers of ``channel``."""
        data = encode(channel, payload)
        asyncio.get_running_loop().call_soon(self._deliver, channel, data)
