"""Deprecated: use :mod:`voice.history` (``Message``, ``Schedule``, ``SQLiteStore``). This re-export stays for one
release; ``Store`` here is the SQLite store, as it was."""

import warnings

from .history import Message, Schedule  # noqa: F401
from .history import SQLiteStore as Store  # noqa: F401

warnings.warn("voice.storage is deprecated; import from voice.history", DeprecationWarning, stacklevel=2)
