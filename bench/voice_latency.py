"""End-to-end latency on the offline models: Piper-spoken questions streamed in real time over the WebSocket to a
server process running Whisper tiny.en + Piper, measuring from the end of the user's speech (the last voiced frame
sent) to the final transcript and to the first byte of reply audio. Also peak RSS and the RSS of extra idle calls.

    HF_HUB_OFFLINE=1 python bench/voice_latency.py            # optimized endpointing
    HF_HUB_OFFLINE=1 python bench/voice_latency.py --naive    # baseline: 600 ms silence, then transcribe
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

import httpx
import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.speech import piper_speech, silence, wer  # noqa: E402

QUESTIONS = [
    "what is the weather like in paris today",
    "can you book a table for two at eight",
    "how far is the nearest train station",
    "please remind me to call my mother tomorrow",
    "what time does the museum open on sunday",
    "play some relaxing music in the living room",
    "how many grams are in a pound",
    "turn off the lights in the kitchen",
    "what is the capital of australia",
    "send a message to john saying i am running late",
    "how do i make a cup of green tea",
    "set a timer for fifteen minutes",
]


def mem(pid: int) -> dict[str, float]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def ask(url: str, question: str, pcm: bytes) -> dict:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start_call"}))
        while json.loads(await ws.recv()).get("status") != "listening":
            pass
        result: dict = {"question": question}
        done = asyncio.Event()

        async def reader() -> None:
            async for raw in ws:
                now = time.monotonic()
                if isinstance(raw, bytes):
                    result.setdefault("audio_at", now)
                    continue
                m = json.loads(raw)
                if m.get("type") == "transcript" and m.get("role") == "user":
                    result["final_at"], result["heard"] = now, m["text"]
                if m.get("type") == "metrics":
                    result["metrics"] = m
                    done.set()

        task = asyncio.create_task(reader())
        audio = silence(400) + pcm
        frames = [audio[i : i + 640] for i in range(0, len(audio), 640)]
        start = time.monotonic()
        for k, frame in enumerate(frames):
            await asyncio.sleep(max(0.0, start + k * 0.02 - time.monotonic()))
            await ws.send(frame)
        result["speech_end"] = time.monotonic()  # the last voiced frame has just been sent
        k = len(frames)
        while not done.is_set() and k < len(frames) + 250:  # keep the microphone open: silence
            await asyncio.sleep(max(0.0, start + k * 0.02 - time.monotonic()))
            await ws.send(bytes(640))
            k += 1
        task.cancel()
        return result


async def idle_call_rss(url: str, pid: int, n: int) -> float:
    before = mem(pid)["VmRSS"]
    conns = []
    for i in range(n):
        ws = await websockets.connect(url.replace("/lat", f"/idle{i}"))
        await ws.send(json.dumps({"type": "start_call"}))
        conns.append(ws)
    for _ in range(50):  # a second of silence into each
        await asyncio.gather(*(ws.send(bytes(640)) for ws in conns))
        await asyncio.sleep(0.02)
    after = mem(pid)["VmRSS"]
    for ws in conns:
        await ws.close()
    return (after - before) / n


async def run(a) -> dict:
    cmd = [sys.executable, os.path.join(ROOT, "bench", "local_app.py"), "--port", str(a.port)]
    if a.naive:
        cmd.append("--naive")
    server = subprocess.Popen(cmd, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{a.port}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
        loaded = mem(server.pid)
        url = f"ws://127.0.0.1:{a.port}/agents/echo/lat"
        speech = {q: piper_speech(q) for q in QUESTIONS}  # synthesized before any timing
        results = []
        for q in QUESTIONS[: a.n]:
            results.append(await ask(url, q, speech[q]))
            await asyncio.sleep(0.5)
        per_idle = await idle_call_rss(url, server.pid, 20)
        peak = mem(server.pid)["VmHWM"]
    finally:
        server.terminate()
        server.wait()
    stt = [1000 * (r["final_at"] - r["speech_end"]) for r in results if "final_at" in r]
    v2v = [1000 * (r["audio_at"] - r["speech_end"]) for r in results if "audio_at" in r]
    return {
        "mode": "naive (600 ms silence, then transcribe)" if a.naive else "early transcription (default)",
        "questions": len(results),
        "final_p50_ms": round(pct(stt, 50)), "final_p90_ms": round(pct(stt, 90)),
        "audio_p50_ms": round(pct(v2v, 50)), "audio_p90_ms": round(pct(v2v, 90)),
        "wer": round(wer([r["question"] for r in results], [r.get("heard", "") for r in results]), 3),
        "rss_loaded_mb": round(loaded["VmRSS"]), "peak_rss_mb": round(peak), "rss_per_idle_call_mb": round(per_idle, 2),
        "load_avg": os.getloadavg()[0],
        "mean_server_v2v_ms": round(statistics.mean(
            r["metrics"]["voice_to_voice_ms"] for r in results if "metrics" in r)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--naive", action="store_true")
    ap.add_argument("-n", type=int, default=len(QUESTIONS))
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "voice_latency.jsonl"))
    a = ap.parse_args()
    res = asyncio.run(run(a))
    print(json.dumps(res))
    with open(a.out, "a") as f:
        f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
