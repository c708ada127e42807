"""CPU per WebRTC call: Opus decode + encode, resampling, DTLS/SRTP and the rest of the transport, with instant
fake providers so only the transport costs — for both codec paths: ``direct`` (voice/transports/webrtc/codec.py:
mono Opus encoded once by libopus in 60 ms packets, nothing sent in silence; the caller asked for 40 ms wideband
packets, put in order by our jitter buffer and decoded straight to 16 kHz) and ``aiortc`` (aiortc's own codecs:
96 kbps stereo encode of every 20 ms frame, 48 kHz stereo decode, our mixdown and resampler).

The server runs in a subprocess pinned to core 0 (``taskset -c 0``); this process, pinned to core 1, runs N aiortc
peers on loopback. Each peer sends a speech-like signal in real time on its microphone track for the whole
window, encoded once up front the way Chromium does after reading the server's answer (mono, VOIP, the answer's
``a=ptime`` and ``maxplaybackrate``: 40 ms wideband at 20 kbps from ``direct``, 20 ms fullband at 32 kbps from
``aiortc``) so that the client side stays cheap enough for 40+ peers on one core, and counts the agent's packets
without decoding them; it asks for a spoken reply every ``--turn-interval`` seconds over the data channel
(speech-like agent audio ~60% of the time, silence otherwise). Server CPU comes from /proc/<pid>/stat. One server
process per codec path, one after the other.

    python bench/webrtc_cpu.py                         # N = 1, 10, 20, 40, both paths; bench/results/webrtc_cpu.md
    python bench/webrtc_cpu.py --counts 1 10 --duration 15 --paths direct
    VOICE_WEBRTC_PACKET_MS=20 python bench/webrtc_cpu.py --paths direct   # the caller's packets left at 20 ms

The load must be real time at the server: the table shows the audio it received (× real time), and for the
aiortc path the frames it emitted per call per second (50 = real time), for the direct path the share of packets
sent late by more than a packet's duration; a row that falls short is not valid.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import functools
import json
import os
import platform
import queue
import re
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


def serve(port: int, db: str, path: str) -> None:
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
    mount_webrtc(app, max_peers=1000, direct_opus=path == "direct")
    gateway = app.state.voice.webrtc

    @app.get("/bench/stats")
    async def stats() -> dict:
        sessions = list(gateway.sessions)
        return {
            "sessions": len(sessions),
            "fed_bytes": sum(s.fed_bytes for s in stt.sessions),
            "emitted_frames": sum(s.output.emitted_frames for s in sessions),
            "audio_frames": sum(s.output.audio_frames for s in sessions),
            # the direct path really ran: packets our encoder made, frames our decoder took
            "packets": sum(getattr(s.track, "packets", 0) for s in sessions),
            "late_packets": sum(getattr(s.track, "late_packets", 0) for s in sessions),
            "decoded_frames": sum(s.audio_in.decoded_frames for s in sessions if s.audio_in is not None),
        }

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --- the load (this process) ------------------------------------------------------------------------------------


def browser_like_packets(pcm48: bytes, answer: str) -> tuple[list[bytes], int]:
    """``pcm48`` (48 kHz mono) as the Opus packets a browser sends given the server's ``answer``, and their
    duration in ms: mono, VOIP, the answer's ``a=ptime`` (else 20 ms) and ``maxplaybackrate`` applied the way
    Chromium's libwebrtc does (bandwidth capped; 12/20/32 kbps for narrow-, wide- and fullband)."""

    ptime = re.search(r"^a=ptime:(\d+)", answer, re.M)
    rate = re.search(r"maxplaybackrate=(\d+)", answer)
    ms = int(ptime.group(1)) if ptime else 20
    max_rate = int(rate.group(1)) if rate else 48_000
    bitrate = 12_000 if max_rate <= 8_000 else 20_000 if max_rate <= 16_000 else 32_000
    return _encoded(pcm48, ms, max_rate, bitrate), ms


@functools.lru_cache(maxsize=8)
def _encoded(pcm48: bytes, ms: int, max_rate: int, bitrate: int) -> list[bytes]:
    from voice.transports.webrtc.opus import OpusEncoder

    encoder = OpusEncoder(48_000, 1, bitrate, 9, "voip")
    encoder.limit_bandwidth(max_rate)
    step = 96 * ms
    pcm48 += bytes(-len(pcm48) % step)
    return [encoder.encode(pcm48[i : i + step]) for i in range(0, len(pcm48), step)]


def make_packet_mic():
    """A microphone track that plays already-encoded packets in a loop, in real time, once :meth:`use` gave them
    (after the answer: their length is the answer's)."""
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
    from av import Packet

    class PacketMic(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self._start: float | None = None
            self._n = 0
            self._packets: list[bytes] = []
            self._ms = 20
            self._ready = asyncio.Event()

        def use(self, packets: list[bytes], ms: int) -> None:
            self._packets, self._ms = packets, ms
            self._ready.set()

        async def recv(self) -> Packet:
            await self._ready.wait()
            if self.readyState != "live":
                raise MediaStreamError
            if self._start is None:
                self._start = time.monotonic()
            else:
                self._n += 1
                wait = self._start + self._n * self._ms / 1000 - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            packet = Packet(self._packets[self._n % len(self._packets)])
            packet.pts = self._n * 48 * self._ms
            packet.time_base = fractions.Fraction(1, 48_000)
            return packet

    return PacketMic()


class CountingInput(queue.Queue):
    """In place of the client receiver's decoder queue: counts the agent's packets, decodes nothing."""

    def __init__(self, peer) -> None:
        super().__init__()
        self.peer = peer

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(None, block, timeout)
        else:
            self.peer.frames_received += 1


def bench_peer(base: str, instance: str):
    from tests.webrtc_peer import WebRTCTestPeer

    class BenchPeer(WebRTCTestPeer):
        def _on_track(self, track) -> None:
            for transceiver in self.pc.getTransceivers():
                if transceiver.receiver.track is track:  # the receiver has not started: swap its decoder queue
                    transceiver.receiver._RTCRtpReceiver__decoder_queue = CountingInput(self)

    peer = BenchPeer(base, "assistant", instance, keep_audio=False)
    peer.mic = make_packet_mic()
    return peer


def cpu_seconds(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


async def get_stats(http, base: str) -> dict:
    r = await http.get(f"{base}/bench/stats")
    return r.json()


async def measure(n: int, base: str, pid: int, duration: float, turn_interval: float, pcm48: bytes) -> dict:
    import httpx

    peers = []
    for i in range(n):
        peer = bench_peer(base, f"bench-{n}-{i}")
        await peer.connect()
        packets, ms = browser_like_packets(pcm48, peer.answer_sdp)
        peer.mic.use(packets, ms)
        await peer.start_call()
        peers.append(peer)
    stop = asyncio.Event()

    async def drive(i: int, peer) -> None:
        await asyncio.sleep(turn_interval * i / max(1, n))  # stagger the turns
        next_turn = time.monotonic()
        while not stop.is_set():
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
        "agent_talking_pct": round(100 * (s1["audio_frames"] - s0["audio_frames"]) / (elapsed * 50 * n), 1),
        "packets_in_at_client_per_call_s": round((received1 - received0) / elapsed / n, 1),
        "late_pct": round(100 * (s1["late_packets"] - s0["late_packets"]) / max(1, s1["packets"] - s0["packets"]), 2),
        "decoded_per_call_s": round((s1["decoded_frames"] - s0["decoded_frames"]) / elapsed / n, 1),
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


async def run(args, server: subprocess.Popen, path: str) -> list[dict]:
    from tests.webrtc_peer import use_loopback_ice

    use_loopback_ice()  # both ends offer 127.0.0.1 only: all traffic stays on loopback
    base = f"http://127.0.0.1:{args.port}"
    await wait_up(base)
    await asyncio.sleep(1.0)
    c0, t0 = cpu_seconds(server.pid), time.monotonic()
    await asyncio.sleep(5.0)
    idle = round(100 * (cpu_seconds(server.pid) - c0) / (time.monotonic() - t0), 1)
    print(f"{path} server idle: {idle}% CPU", file=sys.stderr)
    pcm48 = speech_like(4.0, 48_000, seed=1)
    rows = []
    for n in args.counts:
        row = {"path": path}
        row |= await measure(n, base, server.pid, args.duration, args.turn_interval, pcm48)
        row["idle_cpu_pct"] = idle
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    return rows


PATHS = {
    "direct": "mono Opus, 64 kbps CELT, encoded once by libopus on the event loop in 60 ms packets, nothing sent "
    "while the agent is silent; the caller asked for 40 ms wideband packets (a=ptime, maxplaybackrate), put in order "
    "by our jitter buffer and decoded straight to 16 kHz mono on the loop",
    "aiortc": "aiortc's codecs: every 20 ms frame upmixed to stereo and encoded at 96 kbps in a worker thread, "
    "silence included; 48 kHz stereo decode in a thread, our mixdown and 48→16 kHz soxr",
}


def valid(row: dict) -> bool:
    """Real time at the server: all the audio in, and the agent's audio out on time."""
    if row["audio_in_realtime"] < 0.97:
        return False
    return row["frames_out_per_call_s"] >= 48.5 if row["path"] == "aiortc" else row["late_pct"] <= 1.0


def fit(rows: list[dict]) -> tuple[float, float] | None:
    """(% of a core per call, fixed %) by least squares over the valid rows, or None with fewer than two."""
    good = [r for r in rows if valid(r)]
    if len(good) < 2:
        return None
    x = np.array([r["n"] for r in good], dtype=float)
    y = np.array([r["server_cpu_pct"] for r in good], dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def report(rows: list[dict], command: str, args) -> str:
    lines = [
        "# WebRTC transport: server CPU per call",
        "",
        f"`{command}`",
        "",
        (f"Server pinned to core 0 (`taskset -c 0`), {len(rows) and rows[0]['seconds']} s windows; N aiortc peers "
        "on loopback in one process on core 1, sending a speech-like signal as Opus encoded the way Chromium "
        "follows the server's answer (mono, VOIP; 40 ms wideband at 20 kbps for `direct`, 20 ms at 32 kbps for "
        "`aiortc`) and counting the agent's packets. Fake STT/TTS (instant), so this is the transport "
        "alone: Opus decode of the caller's audio, Opus encode of the agent's (speech-like audio ~"
        f"{np.mean([r['agent_talking_pct'] for r in rows]):.0f}% of the time, silence otherwise), 24→48 kHz "
        "resampling of the TTS, SRTP, SCTP data channel, the call engine. Codec paths:"),
        "",
        *[f"- `{name}`: {text}." for name, text in PATHS.items() if any(r["path"] == name for r in rows)],
        "",
        (f"Machine: {cpu_model()}, Python {platform.python_version()}, aiortc {_version('aiortc')}, "
        f"PyAV {_version('av')}, {_libopus()}. Idle server: "
        + ", ".join(f"{r['idle_cpu_pct']}% ({r['path']})" for r in rows if r["n"] == rows[0]["n"]) + " CPU."),
        "",
        ("| path | calls | server CPU % of one core | CPU per call (% of a core) | audio in (× real time) "
        "| frames out / call / s | packets late % | agent talking % | packets at client / call / s "
        "| our decoder, frames / call / s | client CPU % | errors |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        per_call = (r["server_cpu_pct"] - r["idle_cpu_pct"]) / r["n"]
        late = r["late_pct"] if r["path"] == "direct" else "–"
        lines.append(
            f"| {r['path']} | {r['n']} | {r['server_cpu_pct']} | {per_call:.2f} | {r['audio_in_realtime']} | "
            f"{r['frames_out_per_call_s']} | {late} | {r['agent_talking_pct']} | "
            f"{r['packets_in_at_client_per_call_s']} | {r['decoded_per_call_s']} | {r['client_cpu_pct']} | "
            f"{r['errors']} |"
        )
    lines.append("")
    for path in PATHS:
        mine = [r for r in rows if r["path"] == path]
        line = fit(mine)
        if line is not None:
            slope, intercept = line
            lines.append(
                f"- `{path}`: linear fit over the valid rows: **{slope:.2f}% of a core per call** "
                f"({intercept:+.1f}% fixed), i.e. **~{int(100 / slope)} calls per core** at 100%, ~{int(70 / slope)} "
                "with 30% headroom for event-loop latency."
            )
        invalid = [r["n"] for r in mine if not valid(r)]
        if invalid:
            lines.append(f"- `{path}`: not real time (excluded from the fit): N = {invalid}.")
    lines += ["", "Real STT/TTS models cost far more than the transport and are not included."]
    return "\n".join(lines) + "\n"


def _libopus() -> str:
    from voice.transports.webrtc.opus import version

    return version() or "no libopus"


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
    ap.add_argument("--counts", type=int, nargs="*", default=[1, 10, 20, 40])
    ap.add_argument("--paths", nargs="*", choices=list(PATHS), default=["aiortc", "direct"])
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--turn-interval", type=float, default=5.0)
    ap.add_argument("--port", type=int, default=8791)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "webrtc_cpu.md"))
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.port, args.db, args.path)
        return 0
    os.sched_setaffinity(0, {1 % os.cpu_count()})
    command = "python bench/webrtc_cpu.py " + " ".join(sys.argv[1:])
    rows: list[dict] = []
    for path in args.paths:
        with tempfile.TemporaryDirectory(prefix="webrtc-bench-") as tmp:
            server = subprocess.Popen(["taskset", "-c", "0", sys.executable, os.path.abspath(__file__), "--serve",
                                       "--port", str(args.port), "--db", os.path.join(tmp, "voice.db"),
                                       "--path", path])
            try:
                rows += asyncio.run(run(args, server, path))
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
