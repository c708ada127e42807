"""Where conversation history and durable schedules live: the records, and the :class:`Store` interface that the
SQLite store (the default, one process) and the PostgreSQL store (several processes, ``voice[postgres]``) implement
with one behaviour.

Nothing here writes history on its own: :class:`~voice.history.transcript.Transcript` is the single writer of an
instance's history, and :class:`~voice.history.schedule.Scheduler` the only user of the schedule methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

from .bus import Bus, LocalBus


@dataclass(frozen=True)
class Message:
    """One history entry. ``interrupted`` replies hold only the text the user heard."""

    role: str
    content: str
    interrupted: bool = False
    created_at: float = 0.0
    id: int | None = None
    #: structured extras (a tool call's name, arguments and result; a turn's metrics); None for plain text
    meta: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The message as the ``/messages`` endpoint returns it."""
        return asdict(self)


@dataclass(frozen=True)
class Schedule:
    """A durable call of ``method(payload)`` on an agent instance at ``due_at`` (unix time, the store's clock).

    ``attempts`` counts runs that raised; a schedule that keeps failing is kept with ``failed`` set instead of being
    deleted, so nothing is lost silently."""

    id: str
    agent: str
    instance: str
    due_at: float
    method: str
    payload: Any
    attempts: int = 0
    failed: bool = False
    last_error: str | None = None


class Store(ABC):
    """History and schedules. Every method is safe to call from the event loop (I/O happens off it)."""

    #: other processes may write to the same instances (history is refreshed at each turn's start)
    shared: bool = False

    async def start(self) -> None:  # noqa: B027 - optional
        """Open connections and create the schema (idempotent)."""

    def bus(self) -> Bus:
        """A new bus between the processes that share this store (not started). The default reaches this process
        only; a store that other processes share on other hosts returns one that reaches them."""
        return LocalBus()

    @abstractmethod
    async def close(self) -> None:
        """Release every resource. Idempotent."""

    # --- history -----------------------------------------------------------------------------------------------

    @abstractmethod
    async def add_message(self, agent: str, instance: str, message: Message) -> Message:
        """Append one message; returns it with its ``id`` (increasing per store) and ``created_at``."""

    @abstractmethod
    async def messages(
        self, agent: str, instance: str, limit: int | None = None, after_id: int | None = None
    ) -> list[Message]:
        """The most recent ``limit`` messages (all if None) with an id above ``after_id``, oldest first."""

    @abstractmethod
    async def message(self, agent: str, instance: str, message_id: int) -> Message | None:
        """One message of the instance by its id, or None if there is none (or it was trimmed)."""

    @abstractmethod
    async def trim(self, keep: int) -> int:
        """Retention: delete all but the newest ``keep`` messages of every instance; returns how many went."""

    # --- schedules ---------------------------------------------------------------------------------------------

    @abstractmethod
    async def add_schedule(self, agent: str, instance: str, delay: float, method: str, payload: Any) -> Schedule:
        """Store a schedule due ``delay`` seconds from now by the store's clock."""

    @abstractmethod
    async def cancel_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule that has not run; False if there was none."""

    @abstractmethod
    async def claim_due(self, owner: str, lease: float, limit: int = 100) -> list[Schedule]:
        """Atomically take up to ``limit`` due schedules that nobody holds (or whose holder's lease of ``lease``
        seconds ran out: it died) for ``owner``. Across processes each due schedule is claimed by one of them."""

    @abstractmethod
    async def finish_schedule(self, schedule_id: str, owner: str) -> None:
        """The schedule ran: delete it (only if ``owner`` still holds it)."""

    @abstractmethod
    async def retry_schedule(self, schedule_id: str, owner: str, error: str, delay: float) -> None:
        """The schedule raised: release it to run again ``delay`` seconds from now, counting the attempt."""

    @abstractmethod
    async def fail_schedule(self, schedule_id: str, owner: str, error: str) -> None:
        """The schedule raised for the last time: keep it, marked failed, never to run again."""

    @abstractmethod
    async def next_due_in(self) -> float | None:
        """Seconds until the earliest pending schedule is due (≤ 0: now), or None when there is none."""

    @abstractmethod
    async def schedules(self, agent: str | None = None, instance: str | None = None) -> list[Schedule]:
        """Every schedule (of one instance if given), failed ones included, earliest first."""
