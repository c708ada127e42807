"""The asyncpg errors that mean a PostgreSQL connection is lost (shared by the store and the bus)."""

from __future__ import annotations

import asyncpg

#: the server went away or refused us: the connection is unusable, a fresh one may work
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)
