"""Conversation history and durable schedules.

* :mod:`.store` — the records (:class:`Message`, :class:`Schedule`) and the :class:`Store` interface;
  :mod:`.sqlite` — the default store.
* :mod:`.transcript` — :class:`Transcript`, the single writer of one instance's history.
* :mod:`.schedule` — :class:`Scheduler`, which fires due schedules exactly once.
* :mod:`.bus` — notices between the processes that share a store; :mod:`.backends` — which store settings ask for.

This package knows nothing of calls, agents or transports.
"""

from .backends import StoreConfigError, open_store
from .bus import Bus, LocalBus
from .schedule import Scheduler
from .sqlite import SQLiteStore
from .store import Message, Schedule, Store
from .transcript import Transcript

__all__ = [
    "Bus",
    "LocalBus",
    "Message",
    "SQLiteStore",
    "Schedule",
    "Scheduler",
    "Store",
    "StoreConfigError",
    "Transcript",
    "open_store",
]
