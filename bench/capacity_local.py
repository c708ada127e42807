"""Capacity on the offline models: N real-time callers talking to one server process (Whisper tiny.en + Piper).

Each caller opens a WebSocket call (callers start 0.7 s apart) and streams a microphone's worth of audio on an
absolute 20 ms clock for the whole call: a pause, a Piper-spoken question, then silence while it waits for the
reply and hears it out (the reply's audio duration, from its first byte), a pause, the next question... The
questions rotate per caller, so concurrent callers say different things.

Per N it measures, over every question of every caller:

* **v2v**: from sending the *last voiced 20 ms frame* of the question to receiving the first byte of reply audio;
* **final**: from the same moment to the user's final transcript;
* **WER** of the final transcripts against the questions (``tests/speech.py``'s normalisation);
* the server's **CPU seconds per call-minute** (utime+stime of the server process over the calls, divided by the
  summed length of the calls), its **peak RSS** (VmHWM), and the load average (other processes on the machine).

One fresh server process per N. JSON lines go to ``bench/results/capacity_local.jsonl``; ``--table`` prints them.

    HF_HUB_OFFLINE=1 python bench/capacity_local.py --counts 1 2 4 8
    HF_HUB_OFFLINE=1 python bench/capacity_local.py --counts 8 --app-root /tmp/main-snapshot --label main
    python bench/capacity_local.py --table
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.voice_latency import QUESTIONS, mem, pct
from tests.speech import piper_speech, wer

FRAME = 640  # 20 ms of 16 kHz int16
CLK_TCK = os.sysconf("SC_CLK_TCK")
OUT = os.path.join(ROOT, "bench", "results", "capacity_local.jsonl")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Turn:
    """One question and what came back."""

    question: str
    speech_end: float = 0.0  # when the last voiced frame was handed to the socket
    final_at: float | None = None
    heard: str = ""
    audio_at: float | None = None
    played_until: float = 0.0  # when a player that started at the first byte would finish what has arrived
    gap_ms: float = 0.0  # silence inside the reply: audio arriving after the player ran dry
    done_at: float | None = None  # transcript_end of the reply
    metrics: dict = field(default_factory=dict)  # the server's metrics message for the turn


@dataclass
class Caller:
    """One call: a microphone on an absolute clock and the replies it hears."""

    ws: websockets.ClientConnection
    rate: int = 16_000  # of the reply audio (audio_config)
    turns: list[Turn] = field(default_factory=list)
    frames_sent: int = 0
    late_frames: int = 0
    start: float = 0.0

    async def send(self, frame: bytes) -> float:
        """Send the next 20 ms frame when it is due; return when it was handed to the socket."""
        due = self.start + self.frames_sent * 0.02
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.02:
            self.late_frames += 1
        await self.ws.send(frame)
        self.frames_sent += 1
        return time.monotonic()

    async def read(self) -> None:
        async for raw in self.ws:
            now = time.monotonic()
            turn = self.turns[-1] if self.turns else None
            if isinstance(raw, bytes):
                if turn is not None and turn.speech_end:
                    turn.audio_at = turn.audio_at or now
                    if turn.played_until and now > turn.played_until + 0.02:
                        turn.gap_ms += 1000 * (now - turn.played_until)
                    turn.played_until = max(turn.played_until, now) + len(raw) / 2 / self.rate
                continue
            m = json.loads(raw)
            kind = m.get("type")
            if kind == "audio_config":
                self.rate = int(m.get("sampleRate", 16_000))
            elif turn is None:
                continue
            elif kind == "transcript" and m.get("role") == "user" and turn.final_at is None:
                turn.final_at, turn.heard = now, m["text"]
            elif kind == "transcript_end":
                turn.done_at = now
            elif kind == "metrics":
                turn.metrics = m


async def run_caller(url: str, questions: list[str], speech: dict[str, bytes], pause_s: float) -> Caller:
    """Call, ask each question in real time, wait for and listen to each reply, hang up."""
    async with websockets.connect(url, max_size=None) as ws:
        caller = Caller(ws)
        await ws.send(json.dumps({"type": "start_call"}))
        while (m := json.loads(await ws.recv())).get("status") != "listening":
            if m.get("type") == "audio_config":
                caller.rate = int(m.get("sampleRate", 16_000))
        reader = asyncio.create_task(caller.read())
        caller.start = time.monotonic()
        silent = bytes(FRAME)
        try:
            for question in questions:
                for _ in range(round(pause_s / 0.02)):
                    await caller.send(silent)
                turn = Turn(question)
                caller.turns.append(turn)
                pcm = speech[question]
                for offset in range(0, len(pcm), FRAME):
                    sent = await caller.send(pcm[offset : offset + FRAME].ljust(FRAME, b"\0"))
                turn.speech_end = sent
                deadline = sent + 15.0  # a reply later than this counts as missed
                while time.monotonic() < deadline:  # the mic stays open: silence until the reply has been heard
                    if turn.done_at is not None and turn.audio_at is not None and time.monotonic() >= turn.played_until:
                        break
                    await caller.send(silent)
        finally:
            reader.cancel()
        return caller


async def measure(n: int, a: argparse.Namespace, speech: dict[str, bytes]) -> dict:
    port = a.port
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=a.app_root)
    app = os.path.join(a.app_root, "bench", "local_app.py")
    stats_file = os.path.join(tempfile.mkdtemp(), "model_work.json")
    # (an older checkout's app may not report what its model queue ran)
    stats_args = ["--stats", stats_file] if "--stats" in Path(app).read_text() else []
    server = await asyncio.create_subprocess_exec(sys.executable, app, "--port", str(port), *stats_args, env=env)
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(900):
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the server did not start")
        per_caller = a.questions or max(4, -(-24 // n))
        rss_loaded = mem(server.pid)["VmRSS"]
        load_before = os.getloadavg()[0]
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()

        async def one(i: int) -> Caller:
            await asyncio.sleep(i * a.stagger)
            qs = [QUESTIONS[(i * 5 + k) % len(QUESTIONS)] for k in range(per_caller)]
            return await run_caller(f"ws://127.0.0.1:{port}/agents/echo/cap{i}", qs, speech, a.pause)

        callers = await asyncio.gather(*(one(i) for i in range(n)))
        cpu1, t1 = cpu_seconds(server.pid), time.monotonic()
        peak = mem(server.pid)["VmHWM"]
    finally:
        server.terminate()
        await server.wait()
    model_work = json.loads(Path(stats_file).read_text()) if os.path.exists(stats_file) else {}
    turns = [t for c in callers for t in c.turns]
    v2v = [1000 * (t.audio_at - t.speech_end) for t in turns if t.audio_at is not None]
    final = [1000 * (t.final_at - t.speech_end) for t in turns if t.final_at is not None]
    after_final = [1000 * (t.audio_at - t.final_at) for t in turns if t.audio_at is not None and t.final_at is not None]
    tts_first = [t.metrics["tts_first_audio_ms"] for t in turns if t.metrics.get("tts_first_audio_ms") is not None]
    call_minutes = sum(c.frames_sent for c in callers) * 0.02 / 60
    return {
        "label": a.label, "calls": n, "turns": len(turns),
        "answered": sum(t.audio_at is not None for t in turns),
        "v2v_p50_ms": round(pct(v2v, 50)), "v2v_p90_ms": round(pct(v2v, 90)), "v2v_max_ms": round(max(v2v)),
        "final_p50_ms": round(pct(final, 50)), "final_p90_ms": round(pct(final, 90)),
        "audio_after_final_p50_ms": round(pct(after_final, 50)),
        "audio_after_final_p90_ms": round(pct(after_final, 90)),
        "tts_first_audio_p50_ms": round(pct(tts_first, 50)), "tts_first_audio_p90_ms": round(pct(tts_first, 90)),
        "turns_with_gaps": sum(t.gap_ms > 0 for t in turns), "gap_ms_total": round(sum(t.gap_ms for t in turns)),
        "wer": round(wer([t.question for t in turns], [t.heard for t in turns]), 3),
        "cpu_s_per_call_min": round((cpu1 - cpu0) / call_minutes, 1),
        "server_cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0)),
        "rss_loaded_mb": round(rss_loaded), "peak_rss_mb": round(peak),
        "late_frames": sum(c.late_frames for c in callers),
        "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
        "stagger_s": a.stagger, "pause_s": a.pause, "cores": len(os.sched_getaffinity(0)),
        "at": time.strftime("%Y-%m-%d %H:%M:%S"), "model_work": model_work,
        "misheard": sorted({(t.question, t.heard) for t in turns if wer(t.question, t.heard) > 0}),
    }


def table(path: str) -> str:
    """The results file as a markdown table."""
    head = ("| label | calls | turns | answered | v2v p50 | v2v p90 | v2v max | final p50 | final p90 | WER "
            "| CPU s / call-min | server CPU % | peak RSS MB | load before→after |")
    lines = [head, "|---|" + "---:|" * 13]
    with open(path) as f:
        for row in map(json.loads, f):
            lines.append(
                f"| {row['label']} | {row['calls']} | {row['turns']} | {row['answered']} | {row['v2v_p50_ms']} "
                f"| {row['v2v_p90_ms']} | {row['v2v_max_ms']} | {row['final_p50_ms']} | {row['final_p90_ms']} "
                f"| {row['wer']} | {row['cpu_s_per_call_min']} | {row['server_cpu_pct']} | {row['peak_rss_mb']} "
                f"| {row['load_before']}→{row['load_after']} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--questions", type=int, default=0, help="per caller (default: max(4, 24 / N))")
    ap.add_argument("--stagger", type=float, default=0.7, help="seconds between two callers' starts")
    ap.add_argument("--pause", type=float, default=1.0, help="silence before each question, seconds")
    ap.add_argument("--app-root", default=ROOT, help="the checkout whose bench/local_app.py and voice/ serve")
    ap.add_argument("--label", default="this branch")
    ap.add_argument("--port", type=int, default=8767)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--table", action="store_true", help="print the results file as a markdown table and exit")
    a = ap.parse_args()
    if a.table:
        print(table(a.out))
        return
    speech = {q: piper_speech(q) for q in QUESTIONS}  # synthesized before any timing
    for n in a.counts:
        row = asyncio.run(measure(n, a, speech))
        print(json.dumps(row), flush=True)
        with open(a.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
