"""Pipeline overhead through HAProxy (``deploy/haproxy.cfg``) in front of 1, 2 and 3 ``voice serve`` processes
sharing one PostgreSQL database, with instant fake providers: end of turn → first reply audio byte, and the CPU
every part takes per call.

    python bench/cluster_overhead.py                          # 1, 2, 3 processes × 100 calls, 20 s each
    python bench/cluster_overhead.py --procs 0 1 2 3 --calls 100 200 --duration 20

``--procs 0`` is the baseline: one process on SQLite, the load client straight at it (no HAProxy, no PostgreSQL).

Pinning, on a 2-core machine: every ``voice serve`` process, HAProxy and PostgreSQL (its postmaster and so every
backend) on core 0; the load client (../shared/bench/load_client.py --protocol cf-voice) on core 1. So the processes
share one core: this shows what the balancer, the shared database and the split into processes cost, not how
capacity grows with cores or hosts. PostgreSQL 15 runs with its default durability (fsync on, synchronous_commit
on). CPU is read from /proc (utime + stime) over the load client's run; 100 % = one core.

Appends raw results to bench/results/cluster_overhead.jsonl and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cluster import Cluster, ServeProcess  # noqa: E402
from tests.pg import PostgresServer  # noqa: E402

LOAD_CLIENT = ROOT.parent / "shared" / "bench" / "load_client.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (PostgreSQL's backends are the postmaster's)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def pin(pids: list[int], cpu: int) -> None:
    for pid in pids:
        try:
            os.sched_setaffinity(pid, {cpu})
        except ProcessLookupError:
            pass


async def run(server: PostgresServer, postmaster: int, procs: int, calls: int, args: argparse.Namespace) -> dict:
    """One load run; ``procs`` 0: the baseline, one process on SQLite with the load client straight at it."""
    database = server.create_database()
    with tempfile.TemporaryDirectory() as tmp:
        if procs == 0:
            direct = ServeProcess("voice1", {"VOICE_DB": f"{tmp}/bench.db"}, Path(tmp) / "voice1.log",
                                  app="bench.cluster_app:app", cpus="0")
            direct.spawn()
            await direct.wait_ready()
            stop, url, servers, haproxy = direct.stop, direct.ws, {"voice1": direct.pid}, None
        else:
            cluster = Cluster(server.dsn(database), Path(tmp), size=procs, app="bench.cluster_app:app", cpus="0",
                              fast_checks=False)  # deploy/haproxy.cfg's own health checks: GET /readyz every 2 s
            await cluster.start()
            assert cluster.proxy._proc is not None
            stop, url, haproxy = cluster.stop, cluster.proxy.ws, cluster.proxy._proc.pid
            servers = {p.name: p.pid for p in cluster.procs.values()}
            pin([haproxy], 0)
        try:
            parts = lambda: {  # noqa: E731
                **{name: cpu_seconds(pid) for name, pid in servers.items()},
                "haproxy": cpu_seconds(haproxy) if haproxy else 0.0,
                "postgres": sum(cpu_seconds(p) for p in [postmaster, *children(postmaster)]),
            }
            label = f"{procs}proc-{calls}" if procs else f"direct-{calls}"
            command = ["taskset", "-c", "1", sys.executable, str(args.load_client), "--protocol", "cf-voice",
                       "--url", f"{url}/agents/assistant/bench-{{i}}", "-n", str(calls),
                       "--duration", str(args.duration), "--server-pid", str(servers["voice1"]), "--label", label]
            before, started = parts(), time.monotonic()
            line = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]
            elapsed, after = time.monotonic() - started, parts()
        finally:
            stop()
    server.drop_database(database)
    load = json.loads(line)
    cpu = {name: round(100 * (after[name] - before[name]) / elapsed, 1) for name in before}
    total = sum(cpu.values())
    result = {"label": label, "procs": procs, "calls": calls, "turns": load["turns"],
              "answered": load["answered_frac"], "p50_ms": load["lat_p50_ms"], "p99_ms": load["lat_p99_ms"],
              "max_ms": load["lat_max_ms"], "errors": load["n_errors"], "cpu_pct": cpu,
              "cpu_total_pct": round(total, 1), "cpu_per_call_pct": round(total / calls, 3),
              "window_s": round(elapsed, 1), "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with args.out.open("a") as f:
        f.write(json.dumps(result) + "\n")
    return result


async def main(args: argparse.Namespace) -> list[dict]:
    server = PostgresServer(settings={}).start()  # PostgreSQL's defaults: fsync on, synchronous_commit on
    try:
        assert server._proc is not None
        postmaster = server._proc.pid
        pin([postmaster, *children(postmaster)], 0)
        return [await run(server, postmaster, procs, calls, args)
                for calls in args.calls for procs in args.procs]
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--calls", type=int, nargs="*", default=[100])
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cluster_overhead.jsonl")
    parser.add_argument("--load-client", type=Path, default=LOAD_CLIENT, help="../shared/bench/load_client.py")
    results = asyncio.run(main(parser.parse_args()))
    print("| processes (0: direct, SQLite) | calls | turns | answered | p50 ms | p99 ms | max ms | voice serve CPU |"
          " HAProxy CPU | PostgreSQL CPU | total CPU per call | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        serve = sum(v for k, v in r["cpu_pct"].items() if k.startswith("voice"))
        print(f"| {r['procs']} | {r['calls']} | {r['turns']} | {r['answered'] * 100:.0f} % | {r['p50_ms']} |"
              f" {r['p99_ms']} | {r['max_ms']} | {serve:.1f} % | {r['cpu_pct']['haproxy']} % |"
              f" {r['cpu_pct']['postgres']} % | {r['cpu_per_call_pct']} % | {r['errors']} |")
