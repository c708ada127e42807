"""Pipeline overhead with instant fake providers: end of turn → first audio byte, at several concurrencies.

The server runs pinned to core 0 and the load client (../shared/bench/load_client.py) to core 1:

    python bench/overhead.py                       # 1, 10, 100 calls, then the search for calls per core
    python bench/overhead.py --counts 1 10 100 --no-search
    python bench/overhead.py --reply two-sentences --counts 250 300 320 350 --no-search   # the equal-work load
    python bench/overhead.py --server floor --reply two-sentences --counts 150 --no-search  # the framework alone
    python bench/overhead.py --reply two-sentences --counts 150 --no-search --turn-interval 100  # frames, no turns

``--reply two-sentences``: the agent streams two sentences and the fake TTS makes 1.0 s of audio of each (the same
reply as the peer harnesses). Appends raw results to bench/results/overhead.jsonl and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOAD_CLIENT = os.path.join(ROOT, "..", "shared", "bench", "load_client.py")


def run_load(n: int, port: int, pid: int, duration: float, out: str, label: str, client: str = LOAD_CLIENT,
             turn_interval: float = 4.0) -> dict:
    cmd = ["taskset", "-c", "1", sys.executable, client, "--protocol", "cf-voice",
           "--url", f"ws://127.0.0.1:{port}/agents/assistant/bench-{{i}}", "-n", str(n), "--duration", str(duration),
           "--turn-interval", str(turn_interval), "--reply-timeout", str(min(3.0, turn_interval * 0.8)),
           "--server-pid", str(pid), "--label", label, "--out", out]
    line = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]
    return json.loads(line)


def ok(r: dict) -> bool:
    return r["lat_p99_ms"] is not None and r["lat_p99_ms"] <= 100 and r["answered_frac"] == 1.0 and r["n_errors"] == 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", type=int, nargs="*", default=[1, 10, 100])
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--no-search", action="store_true")
    ap.add_argument("--search-from", type=int, default=150)
    ap.add_argument("--search-step", type=int, default=50)
    ap.add_argument("--reply", choices=["okay", "two-sentences"], default="okay")
    ap.add_argument("--ws", default=None,
                    help="uvicorn's WebSocket implementation; default: voice's own (voice.transports.uvicorn_ws, what "
                         "`voice serve` runs) for the voice server, websockets-sansio (uvicorn's auto) for the floor")
    ap.add_argument("--server", choices=["voice", "floor"], default="voice",
                    help="floor: bench/floor_server.py, the same wire traffic with no voice library")
    ap.add_argument("--turn-interval", type=float, default=4.0, help="seconds between turns on one call")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--load-client", default=LOAD_CLIENT, help="path of shared/bench/load_client.py")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "overhead.jsonl"))
    a = ap.parse_args()
    script = "fake_server.py" if a.server == "voice" else "floor_server.py"
    ws = a.ws or ("voice" if a.server == "voice" else "websockets-sansio")
    server = subprocess.Popen(["taskset", "-c", "0", sys.executable, os.path.join(ROOT, "bench", script),
                               "--port", str(a.port), "--reply", a.reply, "--ws", ws])
    tag = ("" if a.server == "voice" else "floor-") + ("" if a.reply == "okay" else "2s-")
    tag += "" if a.turn_interval == 4.0 else f"t{a.turn_interval:g}-"
    try:
        time.sleep(4)
        results = [run_load(n, a.port, server.pid, a.duration, a.out, f"{tag}ws-{n}", a.load_client, a.turn_interval)
                   for n in a.counts]
        if not a.no_search:
            n, best = a.search_from, None
            while n <= 1000:
                r = run_load(n, a.port, server.pid, a.duration, a.out, f"{tag}search-{n}", a.load_client,
                             a.turn_interval)
                results.append(r)
                if not ok(r):
                    break
                best, n = n, n + a.search_step
            print(f"largest passing N on one core: {best}")
        print("| label | calls | turns | answered | p50 ms | p99 ms | max ms | server CPU % | server RSS MB | errors |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            print(f"| {r['label']} | {r['n']} | {r['turns']} | {r['answered_frac']} | {r['lat_p50_ms']} | "
                  f"{r['lat_p99_ms']} | {r['lat_max_ms']} | {r['server_cpu_pct']} | {r['server_rss_mb']} | "
                  f"{r['n_errors']} |")
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
