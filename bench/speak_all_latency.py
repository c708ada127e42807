"""``speak_all`` across processes: from the agent calling ``speak_all`` to the first audio byte of that message at a
caller of the same instance on another ``voice serve`` process, and (for reference) at a caller on the same process.

    python bench/speak_all_latency.py              # 200 announcements
    python bench/speak_all_latency.py --n 500

Two ``voice serve bench.cluster_app:app`` processes on one PostgreSQL 15 database (default durability); caller A is
connected straight to process 1, caller B to process 2, both on instance "room" of ``announcer``. A types
``announce <k>`` every 250 ms; process 1 stamps its monotonic clock (CLOCK_MONOTONIC, one clock for every process of
a host), stores the message, publishes its id (``NOTIFY``) and speaks it to A; process 2 reads the text by id and
speaks it to B. Latency = arrival of the first audio byte of that announcement at the client − the stamp. The
servers and PostgreSQL are pinned to core 0, this client to core 1.

Appends raw results to bench/results/speak_all_latency.jsonl and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cluster_overhead import children, pin  # noqa: E402
from tests.cluster import Cluster  # noqa: E402
from tests.harness import Client  # noqa: E402
from tests.pg import PostgresServer  # noqa: E402


async def first_audio(client: Client, text: str, after: int, timeout: float = 5.0) -> float:
    """When the first audio byte of the reply that says ``text`` arrived (its transcript_start onwards; the audio
    may follow the transcript_end)."""
    end = await client.wait_for("transcript_end", text=text, after=after, timeout=timeout)
    index = next(i for i, (_, m) in enumerate(client.messages) if m is end)
    start = max(i for i in range(after, index) if isinstance(client.messages[i][1], dict)
                and client.messages[i][1].get("type") == "transcript_start")
    await client.wait_audio(1, timeout)  # (any audio; the loop below waits for this reply's)
    deadline = time.monotonic() + timeout
    while True:
        audio = [t for t, item in client.messages[start:] if isinstance(item, bytes)]
        if audio:
            return audio[0]
        assert time.monotonic() < deadline, f"no audio for {text!r}"
        await asyncio.sleep(0.005)


def summary(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2),
            "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2), "max_ms": round(ms[-1], 2)}


async def measure(n: int) -> list[dict]:
    server = PostgresServer(settings={}).start()
    try:
        assert server._proc is not None
        pin([server._proc.pid, *children(server._proc.pid)], 0)
        with tempfile.TemporaryDirectory() as tmp:
            cluster = Cluster(server.dsn(server.create_database()), Path(tmp), size=2, app="bench.cluster_app:app",
                              cpus="0")
            await cluster.start()
            try:
                one, two = cluster.procs.values()
                a = await Client.connect(f"{one.ws}/agents/announcer/room")
                b = await Client.connect(f"{two.ws}/agents/announcer/room")
                for c in (a, b):
                    await c.start_call()
                here, there = [], []
                for k in range(n + 10):
                    mark_a, mark_b, text = a.mark(), b.mark(), f"announce {k}"
                    await a.send({"type": "text_message", "text": text})
                    stamp = (await a.wait_for("announced", n=k, after=mark_a))["at"]
                    heard_here, heard_there = await first_audio(a, text, mark_a), await first_audio(b, text, mark_b)
                    if k >= 10:  # warm-up
                        here.append(heard_here - stamp)
                        there.append(heard_there - stamp)
                    await asyncio.sleep(0.25)
                for c in (a, b):
                    await c.close()
            finally:
                cluster.stop()
    finally:
        server.stop()
    return [{"case": "same process (caller A)", **summary(here)},
            {"case": "other process (caller B)", **summary(there)}]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    results = asyncio.run(measure(args.n))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(ROOT / "bench" / "results" / "speak_all_latency.jsonl", "a") as out:
        out.writelines(json.dumps({"at": stamp, **r}) + "\n" for r in results)
    print("| speak_all → first audio byte | n | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['case']} | {r['n']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} |")
