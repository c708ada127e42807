"""The default :class:`~voice.history.store.Store`: one SQLite file in WAL mode.

One connection per process, used from a single worker thread, so the event loop never blocks on disk and writes are
applied in the order they were issued. Several processes may share the file: claiming a schedule is one atomic
``UPDATE … RETURNING``, so each due schedule runs once.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from .store import Message, Schedule, Store
from .worker import SerialWorker

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent TEXT NOT NULL,
    instance TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    interrupted INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    meta TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_instance ON messages (agent, instance, id);
CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    instance TEXT NOT NULL,
    due_at REAL NOT NULL,
    method TEXT NOT NULL,
    payload TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS schedules_by_due ON schedules (due_at);
"""
# Columns added after the first release, for databases created by it.
SCHEDULE_COLUMNS = {
    "attempts": "INTEGER NOT NULL DEFAULT 0",
    "failed": "INTEGER NOT NULL DEFAULT 0",
    "last_error": "TEXT",
    "claimed_by": "TEXT",
    "claimed_until": "REAL",
}
NOW = "((julianday('now') - 2440587.5) * 86400.0)"  # unix time by the database's clock
SCHEDULE_FIELDS = "id, agent, instance, due_at, method, payload, attempts, failed, last_error"


def _schedule(row: tuple[Any, ...]) -> Schedule:
    return Schedule(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]) if row[5] else None,
                    row[6], bool(row[7]), row[8])


class SQLiteStore(Store):
    """History and schedules in one SQLite file (``":memory:"`` works for tests)."""

    def __init__(self, path: str | Path = "voice.db") -> None:
        self.path = str(path)
        self._worker = SerialWorker("voice-sqlite")
        self._conn: sqlite3.Connection | None = None

    async def start(self) -> None:
        """Open the file (creating it and its folder) and bring the schema up to date."""
        if self._conn is None:
            await self._run(self._open)

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(SCHEMA)
        have = {row[1] for row in conn.execute("PRAGMA table_info(schedules)")}
        for column, decl in SCHEDULE_COLUMNS.items():
            if column not in have:
                conn.execute(f"ALTER TABLE schedules ADD COLUMN {column} {decl}")
        self._conn = conn

    def _run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Submitted at once, so writes keep their order; a caller cancelled meanwhile does not cancel the work (the
        write still happens)."""
        return self._worker.submit(fn, *args)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the store is not started")
        return self._conn

    async def close(self) -> None:
        """Close the connection and stop the worker thread."""
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        if not self._worker.stopped:
            await self._run(_close)
            self._worker.stop()

    # --- history -----------------------------------------------------------------------------------------------

    async def add_message(self, agent: str, instance: str, message: Message) -> Message:
        """Append one message."""
        return await self._run(self._add_message, agent, instance, message)

    def _add_message(self, agent: str, instance: str, m: Message) -> Message:
        meta = None if m.meta is None else json.dumps(m.meta)
        with self._db:
            cur = self._db.execute(
                "INSERT INTO messages (agent, instance, role, content, interrupted, created_at, meta)"
                f" VALUES (?,?,?,?,?,COALESCE(?, {NOW}),?) RETURNING id, created_at",
                (agent, instance, m.role, m.content, int(m.interrupted), m.created_at or None, meta),
            )
            row_id, created = cur.fetchone()
        return Message(m.role, m.content, m.interrupted, created, row_id, m.meta)

    async def messages(
        self, agent: str, instance: str, limit: int | None = None, after_id: int | None = None
    ) -> list[Message]:
        """The most recent ``limit`` messages after ``after_id``, oldest first."""
        return await self._run(self._messages, agent, instance, limit, after_id)

    def _messages(self, agent: str, instance: str, limit: int | None, after_id: int | None) -> list[Message]:
        rows = self._db.execute(
            "SELECT id, role, content, interrupted, created_at, meta FROM messages"
            " WHERE agent=? AND instance=? AND id > ? ORDER BY id DESC LIMIT ?",
            (agent, instance, after_id or 0, -1 if limit is None else limit),
        ).fetchall()
        return [Message(r[1], r[2], bool(r[3]), r[4], r[0], json.loads(r[5]) if r[5] else None) for r in reversed(rows)]

    async def message(self, agent: str, instance: str, message_id: int) -> Message | None:
        """One message of the instance by its id."""
        return await self._run(self._message, agent, instance, message_id)

    def _message(self, agent: str, instance: str, message_id: int) -> Message | None:
        r = self._db.execute(
            "SELECT id, role, content, interrupted, created_at, meta FROM messages"
            " WHERE id=? AND agent=? AND instance=?",
            (message_id, agent, instance),
        ).fetchone()
        return None if r is None else Message(r[1], r[2], bool(r[3]), r[4], r[0], json.loads(r[5]) if r[5] else None)

    async def trim(self, keep: int) -> int:
        """Delete all but the newest ``keep`` messages of every instance."""
        return await self._run(self._trim, keep)

    def _trim(self, keep: int) -> int:
        with self._db:
            return self._db.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER"
                " (PARTITION BY agent, instance ORDER BY id DESC) AS n FROM messages) WHERE n > ?)",
                (keep,),
            ).rowcount

    async def integrity_check(self) -> str:
        """SQLite's own consistency check: "ok" when the file is sound."""
        return await self._run(lambda: str(self._db.execute("PRAGMA integrity_check").fetchone()[0]))

    # --- schedules ---------------------------------------------------------------------------------------------

    async def add_schedule(self, agent: str, instance: str, delay: float, method: str, payload: Any) -> Schedule:
        """Store a schedule due ``delay`` seconds from now."""
        return await self._run(self._add_schedule, uuid.uuid4().hex, agent, instance, delay, method, payload)

    def _add_schedule(self, sid: str, agent: str, instance: str, delay: float, method: str, payload: Any) -> Schedule:
        with self._db:
            row = self._db.execute(
                "INSERT INTO schedules (id, agent, instance, due_at, method, payload, created_at)"
                f" VALUES (?,?,?,{NOW} + ?,?,?,{NOW}) RETURNING {SCHEDULE_FIELDS}",
                (sid, agent, instance, max(0.0, delay), method, json.dumps(payload)),
            ).fetchone()
        return _schedule(row)

    async def cancel_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule; False if there was none."""
        return await self._run(self._delete, "DELETE FROM schedules WHERE id=? AND failed=0", (schedule_id,))

    def _delete(self, sql: str, args: tuple[Any, ...]) -> bool:
        with self._db:
            return self._db.execute(sql, args).rowcount > 0

    async def claim_due(self, owner: str, lease: float, limit: int = 100) -> list[Schedule]:
        """Take due schedules nobody holds (or whose lease ran out) for ``owner``."""
        return await self._run(self._claim_due, owner, lease, limit)

    def _claim_due(self, owner: str, lease: float, limit: int) -> list[Schedule]:
        with self._db:
            rows = self._db.execute(
                f"UPDATE schedules SET claimed_by=?, claimed_until={NOW} + ? WHERE id IN ("
                f" SELECT id FROM schedules WHERE failed=0 AND due_at <= {NOW}"
                f" AND (claimed_until IS NULL OR claimed_until < {NOW}) ORDER BY due_at LIMIT ?)"
                f" RETURNING {SCHEDULE_FIELDS}",
                (owner, lease, limit),
            ).fetchall()
        return sorted((_schedule(r) for r in rows), key=lambda s: s.due_at)

    async def finish_schedule(self, schedule_id: str, owner: str) -> None:
        """Delete a schedule that ran."""
        await self._run(self._delete, "DELETE FROM schedules WHERE id=? AND claimed_by=?", (schedule_id, owner))

    async def retry_schedule(self, schedule_id: str, owner: str, error: str, delay: float) -> None:
        """Release a schedule that raised, to run again later."""
        await self._run(self._update, (
            f"UPDATE schedules SET attempts=attempts+1, last_error=?, due_at={NOW} + ?, claimed_by=NULL,"
            " claimed_until=NULL WHERE id=? AND claimed_by=?"
        ), (error, delay, schedule_id, owner))

    async def fail_schedule(self, schedule_id: str, owner: str, error: str) -> None:
        """Keep a schedule that raised for the last time, marked failed."""
        await self._run(self._update, (
            "UPDATE schedules SET attempts=attempts+1, last_error=?, failed=1, claimed_by=NULL, claimed_until=NULL"
            " WHERE id=? AND claimed_by=?"
        ), (error, schedule_id, owner))

    def _update(self, sql: str, args: tuple[Any, ...]) -> None:
        with self._db:
            self._db.execute(sql, args)

    async def next_due_in(self) -> float | None:
        """Seconds until the earliest pending, unclaimed schedule (or the earliest lease to run out)."""
        return await self._run(self._next_due_in)

    def _next_due_in(self) -> float | None:
        row = self._db.execute(
            f"SELECT MIN(MAX(due_at, COALESCE(claimed_until, 0))) - {NOW} FROM schedules WHERE failed=0"
        ).fetchone()
        return None if row[0] is None else float(row[0])

    async def schedules(self, agent: str | None = None, instance: str | None = None) -> list[Schedule]:
        """Every schedule (of one instance if given), earliest first."""
        return await self._run(self._schedules, agent, instance)

    def _schedules(self, agent: str | None, instance: str | None) -> list[Schedule]:
        sql, args = f"SELECT {SCHEDULE_FIELDS} FROM schedules", cast(tuple[Any, ...], ())
        if agent is not None:
            sql, args = sql + " WHERE agent=? AND instance=?", (agent, instance)
        return [_schedule(r) for r in self._db.execute(sql + " ORDER BY due_at", args).fetchall()]
