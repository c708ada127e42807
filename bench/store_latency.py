"""History write latency, SQLite vs PostgreSQL, and LISTEN/NOTIFY fan-out latency, on this machine.

    python bench/store_latency.py                       # starts its own PostgreSQL 15 (durable settings)
    python bench/store_latency.py --n 500 --writers 20

- ``add_message``, one at a time: each call's latency (await to return), ``--n`` calls after a warm-up.
- 20 concurrent writers, each writing its own instance one message after another (the way 20 calls write their
  turns): every call's latency, and the writes per second of all of them together.
- NOTIFY fan-out: one PostgresBus publishes, another (its own connection, as another process would have) receives;
  publish call → subscriber called, one notice at a time.
- History refresh at a turn's start (``Transcript.refresh()``, what a reply awaits before it takes its history on a
  shared store; skipped on SQLite): nothing new, and one message another process stored since the last turn.

Stores: SQLiteStore on a file in a temporary directory (WAL, synchronous=NORMAL: what voice uses); PostgresStore over
TCP on loopback to a local PostgreSQL 15 with its default durability (fsync on, synchronous_commit on: every commit
waits for its WAL flush) and, as a second database, synchronous_commit=off (a crash of the server may lose the last
few hundred ms of commits, never consistency; closer to SQLite's NORMAL). Appends raw results to
bench/results/store_latency.jsonl and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pg import PostgresServer  # noqa: E402
from voice.history.postgres import PostgresStore  # noqa: E402
from voice.history.postgres_bus import PostgresBus  # noqa: E402
from voice.history.sqlite import SQLiteStore  # noqa: E402
from voice.history.store import Message, Store  # noqa: E402
from voice.history.transcript import Transcript  # noqa: E402

TEXT = "Sure, the pharmacy on Main Street closes at six on Sundays; shall I remind you an hour before?"


def summary(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 3),
            "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3), "max_ms": round(ms[-1], 3)}


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await call()
    return time.perf_counter() - start


async def sequential(store: Store, n: int) -> dict[str, float]:
    for i in range(50):  # warm-up: connections, statement caches
        await store.add_message("bench", "warm", Message("user", f"{TEXT} {i}"))
    samples = [await timed(lambda i=i: store.add_message("bench", "seq", Message("assistant", f"{TEXT} {i}")))
               for i in range(n)]
    return summary(samples)


async def concurrent(store: Store, writers: int, n: int) -> dict[str, float]:
    samples: list[float] = []

    async def writer(w: int) -> None:
        for i in range(n):
            message = Message("user", f"{TEXT} {i}")
            samples.append(await timed(lambda m=message: store.add_message("bench", f"call-{w}", m)))

    await asyncio.gather(*(store.add_message("bench", f"warm-{w}", Message("user", TEXT)) for w in range(writers)))
    start = time.perf_counter()  # (after a warm-up: the pool has opened its connections)
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - start
    return {**summary(samples), "writes_per_s": round(len(samples) / elapsed)}


async def fan_out(dsn: str, n: int) -> dict[str, float]:
    publisher, subscriber = PostgresBus(dsn, name="bench publisher"), PostgresBus(dsn, name="bench subscriber")
    await publisher.start()
    await subscriber.start()
    arrived: asyncio.Queue[float] = asyncio.Queue()
    await subscriber.subscribe("bench", lambda payload: arrived.put_nowait(time.perf_counter()))
    samples = []
    for i in range(n + 20):
        start = time.perf_counter()
        await publisher.publish("bench", {"instance": "alice", "message_id": i})
        got = await asyncio.wait_for(arrived.get(), 5)
        if i >= 20:  # warm-up
            samples.append(got - start)
        await asyncio.sleep(0.002)
    await publisher.close()
    await subscriber.close()
    return summary(samples)


async def refresh(dsn: str, n: int) -> list[dict[str, Any]]:
    mine, theirs = PostgresStore(dsn), PostgresStore(dsn)
    await mine.start()
    await theirs.start()
    try:
        transcript = await Transcript.load(mine, "bench", "refresh", 50)
        for i in range(30):  # a conversation so far
            transcript.add("user" if i % 2 == 0 else "assistant", f"{TEXT} {i}")
        await transcript.refresh()
        idle = [await timed(transcript.refresh) for _ in range(n)]
        fresh = []
        for i in range(n):
            await theirs.add_message("bench", "refresh", Message("assistant", f"Reminder {i}."))
            fresh.append(await timed(transcript.refresh))
        return [{"store": "PostgreSQL 15", "case": "history refresh, nothing new", **summary(idle)},
                {"store": "PostgreSQL 15", "case": "history refresh, 1 new message", **summary(fresh)}]
    finally:
        await mine.close()
        await theirs.close()


async def bench_store(label: str, make: Callable[[], Store], args: argparse.Namespace) -> list[dict[str, Any]]:
    store = make()
    await store.start()
    try:
        return [
            {"store": label, "case": "one writer", **await sequential(store, args.n)},
            {"store": label, "case": f"{args.writers} concurrent writers",
             **await concurrent(store, args.writers, args.n // args.writers * 2)},
        ]
    finally:
        await store.close()


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        results += await bench_store("SQLite (WAL, synchronous=NORMAL)", lambda: SQLiteStore(Path(tmp) / "v.db"), args)
    server = PostgresServer(settings={}).start()  # PostgreSQL's defaults: fsync on, synchronous_commit on
    try:
        durable, relaxed = server.create_database(), server.create_database()
        server.psql(f"ALTER DATABASE {relaxed} SET synchronous_commit = off")
        pool = args.writers
        results += await bench_store("PostgreSQL 15 (synchronous_commit=on)",
                                     lambda: PostgresStore(server.dsn(durable), max_size=pool), args)
        results += await bench_store("PostgreSQL 15 (synchronous_commit=off)",
                                     lambda: PostgresStore(server.dsn(relaxed), max_size=pool), args)
        results.append({"store": "PostgreSQL 15", "case": "NOTIFY → other connection", **await fan_out(
            server.dsn(durable), args.n)})
        results += await refresh(server.dsn(durable), args.n)
    finally:
        server.stop()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="writes (and notices) per case")
    parser.add_argument("--writers", type=int, default=20)
    args = parser.parse_args()
    results = asyncio.run(main(args))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(ROOT / "bench" / "results" / "store_latency.jsonl", "a") as out:
        out.writelines(json.dumps({"at": stamp, **r}) + "\n" for r in results)
    print("| store | case | n | p50 ms | p99 ms | max ms | writes/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['store']} | {r['case']} | {r['n']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} |"
              f" {r.get('writes_per_s', '')} |")
