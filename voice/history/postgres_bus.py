"""A :class:`~voice.history.bus.Bus` between processes over PostgreSQL ``LISTEN/NOTIFY`` (``voice[postgres]``).

Each process holds one direct connection of its own (not a pooled one: ``LISTEN`` belongs to a session) and
publishes on it too, so PostgreSQL orders every notice once for all processes, and this process's subscribers get
its own notices exactly once, the way the others do. If the connection is lost (server restart, failover,
``pg_terminate_backend``, a dead network noticed by the periodic ping), the bus reconnects with backoff and listens
again on every channel; notices published while it was disconnected are lost to it (see :mod:`voice.history.bus`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from .._aio import log
from .bus import Bus, encode
from .pg_errors import CONNECTION_LOST

#: on this connection, only the bus itself runs queries: a closed one is reported as an InterfaceError, and one the
#: server terminated while idle can fail the next query with an InternalClientError (its protocol state is broken)
LOST = (*CONNECTION_LOST, asyncpg.InterfaceError, asyncpg.InternalClientError, TimeoutError)


class PostgresBus(Bus):
    """Notices between every process connected to ``dsn``.

    ``ping_interval`` seconds between liveness checks of an idle connection (a dead network sends no error);
    ``timeout`` bounds connecting, one query, and how long :meth:`publish` waits for a reconnect; ``name`` is the
    connection's ``application_name`` (how it shows in ``pg_stat_activity``)."""

    def __init__(self, dsn: str, *, name: str = "voice bus", ping_interval: float = 10.0, timeout: float = 5.0,
                 max_backoff: float = 5.0) -> None:
        super().__init__()
        self.dsn = dsn
        self.name = name
        self.ping_interval = ping_interval
        self.timeout = timeout
        self.max_backoff = max_backoff
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()  # one query at a time on the connection
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        #: how many times the connection was (re)established; for logs and tests
        self.connections = 0

    async def start(self) -> None:
        """Connect (raising if the database cannot be reached now) and keep the connection up from then on."""
        if self._supervisor is None:
            await self._connect()
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="postgres bus")

    async def close(self) -> None:
        """Disconnect and stop reconnecting. Idempotent."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        conn, self._conn = self._conn, None
        self._connected.clear()
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=self.timeout)
            except LOST:
                conn.terminate()
        await super().close()

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=self.timeout, server_settings={"application_name": self.name})
        try:
            async with self._lock:
                for channel in list(self._subscribers):
                    await conn.add_listener(channel, self._on_notify)
                self._lost.clear()
                conn.add_termination_listener(self._on_terminated)
                self._conn = conn
                self._connected.set()
        except BaseException:
            conn.terminate()
            raise
        self.connections += 1

    def _on_terminated(self, conn: asyncpg.Connection) -> None:
        """``conn`` is gone (asyncpg tells us, or a query on it failed): wake the supervisor to reconnect."""
        if conn is self._conn:
            self._connected.clear()
            self._lost.set()

    def _drop(self, conn: asyncpg.Connection) -> None:
        self._on_terminated(conn)
        conn.terminate()

    def _on_notify(self, conn: asyncpg.Connection, pid: int, channel: str, payload: str) -> None:
        self._deliver(channel, payload)

    async def _supervise(self) -> None:
        """Ping while connected; once the connection is lost, reconnect with backoff."""
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), self.ping_interval)
            except TimeoutError:
                await self._ping()
                continue
            log.warning("bus: lost the connection to PostgreSQL; reconnecting")
            delay = 0.05
            while True:
                try:
                    await self._connect()
                    log.info("bus: reconnected to PostgreSQL")
                    break
                except (*LOST, asyncpg.PostgresError) as e:
                    log.debug("bus: reconnect failed: %s", e)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_backoff)

    async def _ping(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            async with self._lock:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), self.timeout)
        except LOST:
            self._drop(conn)

    async def publish(self, channel: str, payload: dict[str, Any]) -> None:
        """NOTIFY every process (this one included). Waits up to ``timeout`` for a lost connection to come back and
        tries once more if it is lost while sending (a notice may then arrive twice); raises ConnectionError when
        the database stays unreachable."""
        data = encode(channel, payload)
        for attempt in (1, 2):
            try:
                await asyncio.wait_for(self._connected.wait(), self.timeout)
            except TimeoutError:
                raise ConnectionError("the bus is not connected to PostgreSQL") from None
            conn = self._conn
            assert conn is not None
            try:
                async with self._lock:
                    await conn.execute("SELECT pg_notify($1, $2)", channel, data, timeout=self.timeout)
                return
            except LOST as e:
                self._drop(conn)
                if attempt == 2:
                    raise ConnectionError(f"lost the connection to PostgreSQL while publishing: {e}") from e

    async def _listen(self, channel: str) -> None:
        """LISTEN now if connected (a lost connection listens again when it comes back)."""
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                try:
                    await self._conn.add_listener(channel, self._on_notify)
                except LOST:
                    self._drop(self._conn)

    async def _unlisten(self, channel: str) -> None:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                try:
                    await self._conn.remove_listener(channel, self._on_notify)
                except LOST:
                    self._drop(self._conn)
