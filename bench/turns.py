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
import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.speech import wer  # noqa: E402
from tests.speech_set import FRAME, KINDS, Case, InjectedCase, cases  # noqa: E402
from tests.speech_voices import SILENCE_DBFS, block_dbfs  # noqa: E402

FRAME_BYTES = FRAME * 2
TAIL_S = 3.0  # silence streamed after the last utterance before the case is judged


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return round(values[lo] + (values[hi] - values[lo]) * (k - lo))


class Stream:
    """One call: a socket, a reader recording every message with its arrival time, a real-time frame clock."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.events: list[tuple[float, str, dict]] = []
        self.first_audio: list[float] = []  # arrival of the first audio byte after each silence in the reply stream
        self._last_audio = 0.0
        self._reader = asyncio.create_task(self._read())
        self.k = 0
        self.t0 = 0.0

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                now = time.monotonic()
                if isinstance(raw, bytes):
                    if now - self._last_audio > 0.5:
                        self.first_audio.append(now)
                    self._last_audio = now
                    continue
                m = json.loads(raw)
                self.events.append((now, m.get("type", ""), m))
        except websockets.ConnectionClosed:
            pass

    async def send_frames(self, pcm: bytes) -> list[float]:
        """Stream ``pcm`` in 20 ms frames paced by the clock; returns each frame's send time."""
        times = []
        if self.t0 == 0.0:
            self.t0 = time.monotonic()
        for i in range(0, len(pcm), FRAME_BYTES):
            await asyncio.sleep(max(0.0, self.t0 + self.k * 0.02 - time.monotonic()))
            await self.ws.send(pcm[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0"))
            times.append(time.monotonic())
            self.k += 1
        return times

    def of(self, kind: str, after: float = 0.0) -> list[tuple[float, dict]]:
        return [(t, m) for t, k, m in self.events if k == kind and t >= after]

    def users(self) -> list[tuple[float, str]]:
        return [(t, m["text"]) for t, m in self.of("transcript") if m.get("role") == "user"]

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


async def open_call(url: str) -> Stream:
    ws = await websockets.connect(url, max_size=None)
    s = Stream(ws)
    await ws.send(json.dumps({"type": "start_call"}))
    for _ in range(500):
        if any(m.get("status") == "listening" for _, m in s.of("status")):
            break
        await asyncio.sleep(0.01)
    return s


def silence_s(seconds: float) -> bytes:
    return bytes(int(seconds * 50) * FRAME_BYTES)


async def run_stream_case(base: str, case: Case) -> dict:
    s = await open_call(f"{base}/agents/echo/{case.id}-{time.monotonic_ns()}")
    sent = await s.send_frames(case.pcm)
    await s.send_frames(silence_s(TAIL_S + (2.5 if case.kind == "hesitation" else 0.0)))
    users = s.users()
    result: dict = {"id": case.id, "kind": case.kind, "voice": case.voice, "turns": len(users),
                    "expected_turns": len(case.expected_turns), "heard": [u for _, u in users]}
    result["wer"] = wer(" ".join(case.expected_turns), " ".join(u for _, u in users)) if users else 1.0
    ends = [sent[max(0, (u.voiced_end - 1) // FRAME)] for u in case.utterances]
    if case.kind == "complete" and s.first_audio:
        after = [t for t in s.first_audio if t > ends[-1]]
        if after:
            result["v2v_ms"] = 1000 * (after[0] - ends[-1])
        finals = [t for t, _ in users if t > ends[-1]]
        if finals:
            result["final_ms"] = 1000 * (finals[0] - ends[-1])
    await s.close()
    return result


async def run_injected_case(base: str, http: httpx.AsyncClient, case: InjectedCase) -> dict:
    instance = f"{case.id}-{time.monotonic_ns()}"
    s = await open_call(f"{base}/agents/echo/{instance}?long=1")
    await s.send_frames(case.question)
    while not s.first_audio and s.k < 50 * 15:  # the microphone stays open until the reply starts
        await s.send_frames(silence_s(0.02))
    result: dict = {"id": case.id, "kind": case.kind, "voice": case.voice, "injection": case.injection_text
                    or case.description, "expect_interrupt": case.expect_interrupt}
    if not s.first_audio:
        result["error"] = "no reply"
        await s.close()
        return result
    reply_at = s.first_audio[0]
    await s.send_frames(silence_s(max(0.0, reply_at + case.offset_s - time.monotonic())))
    sent = await s.send_frames(case.injection)
    levels = block_dbfs(case.injection, FRAME)
    voice_at = sent[next((i for i, level in enumerate(levels) if level > SILENCE_DBFS), 0)]
    await s.send_frames(silence_s(TAIL_S))
    page = f"{base.replace('ws', 'http', 1)}/agents/echo/{instance}/messages"
    for _ in range(60):  # the microphone stays open until the reply has been heard to its end (then it is stored)
        if any(m["role"] == "assistant" for m in (await http.get(page)).json()["messages"]):
            break
        await s.send_frames(silence_s(0.5))
    interrupts = s.of("playback_interrupt", reply_at)
    pauses = s.of("playback_pause", reply_at)
    result["interrupted"] = bool(interrupts)
    result["paused"] = bool(pauses)
    result["resumed"] = bool(s.of("playback_resume", reply_at))
    if interrupts:
        result["interrupt_ms"] = 1000 * (interrupts[0][0] - voice_at)
    if pauses:
        result["pause_ms"] = 1000 * (pauses[0][0] - voice_at)
    result["answered"] = sum(1 for t, _ in s.users() if t > voice_at)
    result["heard"] = [(round(1000 * (t - voice_at)), m["text"]) for t, m in s.of("transcript_interim", voice_at)
                       if m["text"]] + [(round(1000 * (t - voice_at)), "final: " + u) for t, u in s.users()
                                        if t > voice_at]
    stored = (await http.get(page)).json()["messages"]
    await s.close()
    replies = [m for m in stored if m["role"] == "assistant"]
    result["stored_interrupted"] = bool(replies) and replies[0]["interrupted"]
    return result


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
