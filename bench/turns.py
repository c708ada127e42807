"""Turn-taking on the real local models, over the WebSocket, in real time: the speech set of tests/speech_set.py
(complete questions, 350 ms pauses inside a clause, 0.7–1.0 s hesitations, two turns 4 s apart, and backchannels,
real interruptions and noise bursts injected ~1 s into a spoken reply) streamed as a microphone would, against a
server process with Whisper tiny.en + Piper (bench/local_app.py).

    HF_HUB_OFFLINE=1 python bench/turns.py --split dev                  # this tree
    HF_HUB_OFFLINE=1 python bench/turns.py --split holdout
    HF_HUB_OFFLINE=1 python bench/turns.py --split dev --tree ../wt/base   # another checkout (before/after)

Per case kind it reports what a caller would notice: turns taken vs expected and the WER of what was answered;
end of speech (the last voiced 20 ms frame sent) → first reply audio; for injected sounds whether the reply was cut
(``playback_interrupt``), paused (``playback_pause``) and how soon after the injected voice began, whether the sound
was answered as a turn, and whether the stored reply is whole. JSON lines to bench/results/turns.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.speech_call import run_injected_case, run_stream_case  # noqa: E402
from tests.speech_set import KINDS, InjectedCase, cases  # noqa: E402


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return round(values[lo] + (values[hi] - values[lo]) * (k - lo))


def ok(r: dict) -> bool:
    """Whether the case behaved as a person expects."""
    if r["kind"] in ("complete", "midpause", "hesitation", "two_turns"):
        return r["turns"] == r["expected_turns"]
    if r.get("error"):
        return False
    if r["expect_interrupt"]:
        return r["interrupted"]
    return not r["interrupted"] and not r["answered"] and not r["stored_interrupted"]


def summarize(results: list[dict]) -> dict:
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_kind[r["kind"]].append(r)
    out: dict = {}
    for kind, rs in by_kind.items():
        row: dict = {"cases": len(rs), "as_expected": round(sum(ok(r) for r in rs) / len(rs), 3)}
        if kind in ("complete", "midpause", "hesitation", "two_turns"):
            row["wer"] = round(statistics.mean(r["wer"] for r in rs), 3)
            row["split_or_merged"] = [r["id"] for r in rs if r["turns"] != r["expected_turns"]]
        if kind == "complete":
            v2v = [r["v2v_ms"] for r in rs if "v2v_ms" in r]
            row |= {"v2v_p50_ms": pct(v2v, 50), "v2v_p90_ms": pct(v2v, 90),
                    "final_p50_ms": pct([r["final_ms"] for r in rs if "final_ms" in r], 50)}
        if kind in ("backchannel", "interruption", "noise"):
            row["interrupted"] = round(sum(r.get("interrupted", False) for r in rs) / len(rs), 3)
            row["answered"] = round(sum(bool(r.get("answered")) for r in rs) / len(rs), 3)
            row["stored_interrupted"] = round(sum(bool(r.get("stored_interrupted")) for r in rs) / len(rs), 3)
            row["interrupt_p50_ms"] = pct([r["interrupt_ms"] for r in rs if "interrupt_ms" in r], 50)
            row["interrupt_p90_ms"] = pct([r["interrupt_ms"] for r in rs if "interrupt_ms" in r], 90)
            row["pause_p50_ms"] = pct([r["pause_ms"] for r in rs if "pause_ms" in r], 50)
            row["failures"] = [f'{r["id"]}:{r["injection"]}' for r in rs if not ok(r)]
        out[kind] = row
    return out


async def main_async(a) -> dict:
    tree = os.path.abspath(a.tree)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=tree)
    cmd = [sys.executable, os.path.join(tree, "bench", "local_app.py"), "--port", str(a.port)]
    server = subprocess.Popen(cmd, env=env, cwd=tree)
    base = f"ws://127.0.0.1:{a.port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(600):
                try:
                    if (await http.get(f"http://127.0.0.1:{a.port}/healthz", timeout=0.5)).status_code == 200:
                        break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            todo = cases(a.split, a.kinds, a.limit)  # synthesized (or read from the cache) before any timing
            results = []
            for case in todo:
                if isinstance(case, InjectedCase):
                    r = await run_injected_case(base, http, case)
                else:
                    r = await run_stream_case(base, case)
                results.append(r)
                if a.verbose:
                    print(json.dumps({k: v for k, v in r.items() if k != "heard"} | {"ok": ok(r)}), flush=True)
                await asyncio.sleep(0.3)
    finally:
        server.terminate()
        server.wait()
    return {"split": a.split, "tree": a.tree, "at": time.strftime("%Y-%m-%d %H:%M"), "load_avg": os.getloadavg()[0],
            "summary": summarize(results), "cases": results}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="dev", choices=("dev", "holdout"))
    ap.add_argument("--kinds", nargs="*", default=list(KINDS))
    ap.add_argument("--limit", type=int, default=None, help="at most this many cases per kind")
    ap.add_argument("--tree", default=ROOT, help="the checkout whose server is measured (for before/after)")
    ap.add_argument("--port", type=int, default=8767)
    ap.add_argument("--verbose", "-v", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "turns.jsonl"))
    a = ap.parse_args()
    res = asyncio.run(main_async(a))
    print(json.dumps(res["summary"], indent=1))
    with open(a.out, "a") as f:
        f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
