"""Soak: N concurrent calls with instant fake providers for a long time, turns every few seconds. Reports RSS growth
between the end of warm-up and the end of the run, errors, and asyncio tasks before and after (leaks).

    python bench/soak.py --calls 50 --minutes 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOAD_CLIENT = os.path.join(ROOT, "..", "shared", "bench", "load_client.py")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def health(port: int) -> dict:
    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=60, help="seconds before the RSS baseline is taken")
    ap.add_argument("--port", type=int, default=8767)
    a = ap.parse_args()
    server = subprocess.Popen([sys.executable, os.path.join(ROOT, "bench", "fake_server.py"), "--port", str(a.port)])
    try:
        time.sleep(4)
        tasks_before = health(a.port)["tasks"]
        samples: list[tuple[float, float]] = []
        client = subprocess.Popen(
            [sys.executable, LOAD_CLIENT, "--protocol", "cf-voice", "--url",
             f"ws://127.0.0.1:{a.port}/agents/assistant/soak-{{i}}", "-n", str(a.calls),
             "--duration", str(a.minutes * 60), "--turn-interval", "4", "--server-pid", str(server.pid)],
            stdout=subprocess.PIPE, text=True,
        )
        start = time.monotonic()
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(5):
                samples.append((time.monotonic() - start, rss_mb(server.pid)))

        threading.Thread(target=sample, daemon=True).start()
        out, _ = client.communicate()
        stop.set()
        result = json.loads(out.strip().splitlines()[0])
        time.sleep(2)
        tasks_after = health(a.port)["tasks"]
        base = [r for t, r in samples if t >= a.warmup][:1] or [samples[0][1]]
        end = samples[-1][1]
        report = {
            "calls": a.calls, "minutes": a.minutes, "turns": result["turns"], "answered": result["answered_frac"],
            "p50_ms": result["lat_p50_ms"], "p99_ms": result["lat_p99_ms"], "errors": result["n_errors"],
            "rss_after_warmup_mb": round(base[0], 1), "rss_end_mb": round(end, 1),
            "rss_growth_pct": round(100 * (end - base[0]) / base[0], 2),
            "rss_max_mb": round(max(r for _, r in samples), 1),
            "tasks_before": tasks_before, "tasks_after": tasks_after, "server_cpu_pct": result["server_cpu_pct"],
        }
        print(json.dumps(report))
        with open(os.path.join(ROOT, "bench", "results", "soak.jsonl"), "a") as f:
            f.write(json.dumps(report) + "\n")
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
