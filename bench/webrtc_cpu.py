"""CPU per WebRTC call: Opus decode + encode, resampling, DTLS/SRTP and the rest of the transport, with instant
fake providers so only the transport costs.

The server runs in a subprocess pinned to core 0 (``taskset -c 0``); this process, pinned to core 1, runs N aiortc
peers on loopback. Each peer sends a speech-like signal in real time on its microphone track for the whole
window and asks for a spoken reply every ``--turn-interval`` seconds over the data channel (speech-like agent audio
for ~60% of the time; the track sends Opus-encoded silence otherwise). Server CPU comes from /proc/<pid>/stat.

    python bench/webrtc_cpu.py                         # N = 1, 5, 10, 15; writes bench/results/webrtc_cpu.md
    python bench/webrtc_cpu.py --counts 1 10 --duration 15

The load must be real time at the server: the table shows the audio it received (× real time) and the frames it
emitted per call per second (50 = real time); a row where either falls short is not valid.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TICK = os.sysconf("SC_CLK_TCK")
REPLY = "Sure, here is a short answer that takes about three seconds to say."


@functools.lru_cache(maxsize=16)
def speech_like(seconds: float, rate: int, seed: int = 0) -> bytes:
    """Voiced harmonics with a wandering pitch, 4 Hz syllables and pauses: closer to speech than a tone for Opus."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    f0 = 130 + 40 * np.sin(2 * np.pi * 0.7 * t) + 15 * np.sin(2 * np.pi * 2.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.6
    pauses = (np.sin(2 * np.pi * 0.3 * t) > -0.6).astype(float)
    x = voiced * syllables * pauses * 0.15 + rng.standard_normal(n) * 0.01
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


# --- the server (subprocess) ------------------------------------------------------------------------------------


def serve(port: int, db: str) -> None:
    import uvicorn
    from fastapi import FastAPI

    from tests.webrtc_peer import use_loopback_ice
    from voice import TurnContext, VoiceAgent, create_app
    from voice.audio import AudioChunk
    from voice.testing import FakeTranscriber, FakeTTS
    from voice.transports.webrtc import mount_webrtc

    use_loopback_ice()

    class Talker(VoiceAgent):
        async def on_turn(self, transcript: str, ctx: TurnContext) -> str:
            return REPLY

    class SpeechLikeTTS(FakeTTS):
        async def synthesize(self, text, cancel=None, *, encoding="pcm16", sample_rate=None) -> AudioChunk:
            rate = sample_rate or self.sample_rate
            return AudioChunk(speech_like(len(text) * self.seconds_per_char, rate, seed=len(text)), rate)

    stt = FakeTranscriber()
    app: FastAPI = create_app({"assistant": Talker}, transcriber=stt, tts=SpeechLikeTTS(24_000, 0.045), db_path=db)
    mount_webrtc(app, max_peers=1000)
    gateway = app.state.voice.webrtc

    @app.get("/bench/stats")
    async def stats() -> dict:
        sessions = list(gateway.sessions)
        return {
            "sessions": len(sessions),
            "fed_bytes": sum(s.fed_bytes for s in stt.sessions),
            "emitted_frames": sum(s.output.emitted_frames for s in sessions),
            "audio_frames": sum(s.output.audio_frames for s in sessions),
        }

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --- the load (this process) ------------------------------------------------------------------------------------


def cpu_seconds(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


async def get_stats(http, base: str) -> dict:
    r = await http.get(f"{base}/bench/stats")
    return r.json()


async def measure(n: int, base: str, pid: int, duration: float, turn_interval: float, mic48: bytes) -> dict:
    import httpx

    from tests.webrtc_peer import WebRTCTestPeer

    peers = []
    for i in range(n):
        peer = WebRTCTestPeer(base, "assistant", f"bench-{n}-{i}", keep_audio=False)
        await peer.connect()
        await peer.start_call()
        peers.append(peer)
    stop = asyncio.Event()

    async def drive(i: int, peer: WebRTCTestPeer) -> None:
        await asyncio.sleep(turn_interval * i / max(1, n))  # stagger the turns
        next_turn = time.monotonic()
        while not stop.is_set():
            if peer.mic.queued_seconds() < 1.0:
                peer.mic.play_48k(mic48)
            if time.monotonic() >= next_turn:
                peer.send({"type": "text_message", "text": "talk to me"})
                next_turn += turn_interval
            await asyncio.sleep(0.2)

    drivers = [asyncio.create_task(drive(i, p)) for i, p in enumerate(peers)]
    async with httpx.AsyncClient(timeout=10) as http:
        await asyncio.sleep(3.0)  # warm-up: every peer in its rhythm
        s0, c0, m0, t0 = await get_stats(http, base), cpu_seconds(pid), cpu_seconds(), time.monotonic()
        received0 = sum(p.frames_received for p in peers)
        await asyncio.sleep(duration)
        s1, c1, m1, t1 = await get_stats(http, base), cpu_seconds(pid), cpu_seconds(), time.monotonic()
        received1 = sum(p.frames_received for p in peers)
        stop.set()
        await asyncio.gather(*drivers)
        errors = sum(len(p.json("error")) for p in peers)
        for peer in peers:
            await peer.close()
        deadline = time.monotonic() + 10
        while (await get_stats(http, base))["sessions"] and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    elapsed = t1 - t0
    emitted = s1["emitted_frames"] - s0["emitted_frames"]
    return {
        "n": n,
        "seconds": round(elapsed, 1),
        "server_cpu_pct": round(100 * (c1 - c0) / elapsed, 1),
        "client_cpu_pct": round(100 * (m1 - m0) / elapsed, 1),
        "audio_in_realtime": round((s1["fed_bytes"] - s0["fed_bytes"]) / 32000 / elapsed / n, 3),
        "frames_out_per_call_s": round(emitted / elapsed / n, 1),
        "agent_talking_pct": round(100 * (s1["audio_frames"] - s0["audio_frames"]) / max(1, emitted), 1),
        "frames_in_at_client_per_call_s": round((received1 - received0) / elapsed / n, 1),
        "errors": errors,
    }


async def wait_up(base: str, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while True:
            try:
                if (await http.get(f"{base}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            await asyncio.sleep(0.2)


async def run(args, server: subprocess.Popen) -> list[dict]:
    from tests.webrtc_peer import use_loopback_ice

    use_loopback_ice()  # both ends offer 127.0.0.1 only: all traffic stays on loopback
    base = f"http://127.0.0.1:{args.port}"
    await wait_up(base)
    await asyncio.sleep(1.0)
    c0, t0 = cpu_seconds(server.pid), time.monotonic()
    await asyncio.sleep(5.0)
    idle = round(100 * (cpu_seconds(server.pid) - c0) / (time.monotonic() - t0), 1)
    print(f"server idle: {idle}% CPU", file=sys.stderr)
    mic48 = speech_like(4.0, 48_000, seed=1)
    rows = []
    for n in args.counts:
        row = await measure(n, base, server.pid, args.duration, args.turn_interval, mic48)
        row["idle_cpu_pct"] = idle
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    return rows


def report(rows: list[dict], command: str, args) -> str:
    idle = rows[0]["idle_cpu_pct"] if rows else 0.0
    valid = [r for r in rows if r["audio_in_realtime"] >= 0.97 and r["frames_out_per_call_s"] >= 48.5]
    lines = [
        "# WebRTC transport: server CPU per call",
        "",
        f"`{command}`",
        "",
        (f"Server pinned to core 0 (`taskset -c 0`), {len(rows) and rows[0]['seconds']} s windows; N aiortc peers "
        "on loopback in one process on core 1. Fake STT/TTS (instant), so this is the transport alone: Opus decode "
        "of the caller's audio, 48→16 kHz soxr, Opus encode of the agent track (speech-like audio ~"
        f"{np.mean([r['agent_talking_pct'] for r in rows]):.0f}% of the time, encoded silence otherwise), "
        "24→48 kHz resampling of the TTS, SRTP, SCTP data channel, the call engine."),
        (f"Machine: {cpu_model()}, Python {platform.python_version()}, aiortc {_version('aiortc')}, "
        f"PyAV {_version('av')}. Idle server: {idle}% CPU."),
        "",
        ("| calls | server CPU % of one core | CPU per call (% of a core) | audio in (× real time) | frames out / call / s "
        "| agent talking % | client CPU % | errors |"),
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        per_call = (r["server_cpu_pct"] - idle) / r["n"]
        lines.append(
            f"| {r['n']} | {r['server_cpu_pct']} | {per_call:.2f} | {r['audio_in_realtime']} | "
            f"{r['frames_out_per_call_s']} | {r['agent_talking_pct']} | {r['client_cpu_pct']} | {r['errors']} |"
        )
    if len(valid) >= 2:
        x = np.array([r["n"] for r in valid], dtype=float)
        y = np.array([r["server_cpu_pct"] for r in valid], dtype=float)
        slope, intercept = np.polyfit(x, y, 1)
        lines += [
            "",
            (f"Linear fit over the valid rows: **{slope:.2f}% of a core per call** (+{intercept:.1f}% fixed), i.e. "
            f"**~{int(100 / slope)} calls per core** at 100% — plan for ~{int(70 / slope)} to keep 30% headroom "
            "for event-loop latency. Real STT/TTS models cost far more than this and are not included."),
        ]
    invalid = [r["n"] for r in rows if r not in valid]
    if invalid:
        lines += ["", f"Not real time (excluded from the fit; the client core may be the limit): N = {invalid}."]
    return "\n".join(lines) + "\n"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(name: str) -> str:
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:  # noqa: BLE001
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--counts", type=int, nargs="*", default=[1, 5, 10, 15])
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--turn-interval", type=float, default=5.0)
    ap.add_argument("--port", type=int, default=8791)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "webrtc_cpu.md"))
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.port, args.db)
        return 0
    os.sched_setaffinity(0, {1 % os.cpu_count()})
    command = "python bench/webrtc_cpu.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="webrtc-bench-") as tmp:
        server = subprocess.Popen(["taskset", "-c", "0", sys.executable, os.path.abspath(__file__), "--serve",
                                   "--port", str(args.port), "--db", os.path.join(tmp, "voice.db")])
        try:
            rows = asyncio.run(run(args, server))
        finally:
            server.terminate()
            server.wait()
    text = report(rows, command.strip(), args)
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
