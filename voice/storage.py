"""SQLite storage for conversation history and durable schedules, shared by voice and text.

One connection per process in WAL mode, used from a single worker thread so the event loop never blocks on disk
and writes are applied in the order they were issued.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class Message:
    """One history entry. ``interrupted`` replies hold only the text the user heard."""

    role: str
    content: str
    interrupted: bool = False
    created_at: float = 0.0
    id: int | None = None
    #: structured extras (e.g. a tool call's name, arguments and id); None for plain text
    meta: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Schedule:
    id: str
    agent: str
    instance: str
    due_at: float  # unix time
    method: str
    payload: Any


class Store:
    """History and schedules in one SQLite file (``":memory:"`` works for tests)."""

    def __init__(self, path: str | Path = "voice.db", max_messages_per_instance: int = 1000) -> None:
        self.path = str(path)
        self.max_messages = max_messages_per_instance
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voice-sqlite")
        self._local = threading.local()
        self._conn: sqlite3.Connection | None = None
        self._executor.submit(self._open).result()

    def _open(self) -> None:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(SCHEMA)
        self._conn = conn

    def _run(self, fn, *args) -> asyncio.Future:
        """Submit at once (so writes keep their order and survive the caller being cancelled); await for the result."""
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._executor.submit(_close).result()
        self._executor.shutdown(wait=True)

    # --- messages ------------------------------------------------------------------------------------------

    def add_message(self, agent: str, instance: str, message: Message) -> asyncio.Future[Message]:
        return self._run(self._add_message, agent, instance, message)

    def _add_message(self, agent: str, instance: str, m: Message) -> Message:
        assert self._conn is not None
        created = m.created_at or time.time()
        with self._conn:
            cur = self._conn.execute(
                "INSERT INTO messages (agent, instance, role, content, interrupted, created_at, meta)"
                " VALUES (?,?,?,?,?,?,?)",
                (agent, instance, m.role, m.content, int(m.interrupted), created,
                 None if m.meta is None else json.dumps(m.meta)),
            )
            if self.max_messages > 0:
                self._conn.execute(
                    "DELETE FROM messages WHERE agent=? AND instance=? AND id <= ("
                    " SELECT id FROM messages WHERE agent=? AND instance=? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (agent, instance, agent, instance, self.max_messages),
                )
        return Message(m.role, m.content, m.interrupted, created, cur.lastrowid, m.meta)

    def messages(self, agent: str, instance: str, limit: int | None = None) -> asyncio.Future[list[Message]]:
        """The most recent ``limit`` messages (all if None), oldest first."""
        return self._run(self._messages, agent, instance, limit)

    def _messages(self, agent: str, instance: str, limit: int | None) -> list[Message]:
        assert self._conn is not None
        rows = self._conn.execute(
            "SELECT id, role, content, interrupted, created_at, meta FROM messages WHERE agent=? AND instance=?"
            " ORDER BY id DESC LIMIT ?",
            (agent, instance, -1 if limit is None else limit),
        ).fetchall()
        return [Message(r[1], r[2], bool(r[3]), r[4], r[0], json.loads(r[5]) if r[5] else None) for r in reversed(rows)]

    # --- schedules -----------------------------------------------------------------------------------------

    async def add_schedule(self, agent: str, instance: str, due_at: float, method: str, payload: Any) -> Schedule:
        item = Schedule(uuid.uuid4().hex, agent, instance, due_at, method, payload)
        await self._run(self._add_schedule, item)
        return item

    def _add_schedule(self, s: Schedule) -> None:
        assert self._conn is not None
        with self._conn:
            self._conn.execute(
                "INSERT INTO schedules (id, agent, instance, due_at, method, payload, created_at) VALUES (?,?,?,?,?,?,?)",
                (s.id, s.agent, s.instance, s.due_at, s.method, json.dumps(s.payload), time.time()),
            )

    def remove_schedule(self, schedule_id: str) -> asyncio.Future[bool]:
        return self._run(self._remove_schedule, schedule_id)

    def _remove_schedule(self, schedule_id: str) -> bool:
        assert self._conn is not None
        with self._conn:
            return self._conn.execute("DELETE FROM schedules WHERE id=?", (schedule_id,)).rowcount > 0

    def schedules(self, agent: str | None = None, instance: str | None = None) -> asyncio.Future[list[Schedule]]:
        return self._run(self._schedules, agent, instance)

    def _schedules(self, agent: str | None, instance: str | None) -> list[Schedule]:
        assert self._conn is not None
        sql, args = "SELECT id, agent, instance, due_at, method, payload FROM schedules", []
        if agent is not None:
            sql += " WHERE agent=? AND instance=?"
            args = [agent, instance]
        rows = self._conn.execute(sql + " ORDER BY due_at", args).fetchall()
        return [Schedule(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else None) for r in rows]

    def integrity_check(self) -> asyncio.Future[str]:
        return self._run(lambda: self._conn.execute("PRAGMA integrity_check").fetchone()[0])
