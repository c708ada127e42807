"""How long the caller's voice takes to reach the engine over WebRTC: from the moment a tone is queued on an aiortc
peer's microphone (20 ms packets) to the first loud PCM the server's Opus tap hands the call, on loopback, with
our jitter buffer (``voice/transports/webrtc/jitter.py``) and with aiortc's (which holds four packets back).

    python bench/webrtc_input_latency.py --trials 20

Both ends run in this process, so one clock times both. The mic starts the tone on its next 20 ms frame, so each
figure includes up to 20 ms of waiting for that frame; the difference between the two buffers is what to compare.
A browser asked for 40 ms packets (``a=ptime:40``) adds up to 20 ms of packetization on its side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def trial_latencies(buffer: str, trials: int) -> list[float]:
    import voice.transports.webrtc.session as webrtc_session
    from tests.harness import LiveServer
    from tests.webrtc_peer import WebRTCTestPeer, use_loopback_ice
    from voice import TurnContext, VoiceAgent, create_app
    from voice.testing import FakeTranscriber, FakeTTS
    from voice.transports.webrtc import mount_webrtc

    class Listener(VoiceAgent):
        async def on_turn(self, transcript: str, ctx: TurnContext) -> str:
            return ""

    install = webrtc_session.install_jitter
    if buffer == "aiortc":
        webrtc_session.install_jitter = lambda *args: None  # type: ignore[assignment]
    undo = use_loopback_ice()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            app = create_app({"assistant": Listener}, transcriber=FakeTranscriber(), tts=FakeTTS(24_000, 0.0),
                             db_path=os.path.join(tmp, "voice.db"), webrtc=False)
            mount_webrtc(app, max_peers=2)
            async with LiveServer(app) as server:
                peer = await WebRTCTestPeer(server.http, "assistant", f"latency-{buffer}").connect()
                await peer.start_call()
                await asyncio.sleep(1.0)
                session = next(iter(app.state.voice.webrtc.sessions))
                assert (session.jitter is None) == (buffer == "aiortc")
                marks: dict[str, float] = {}
                deliver = session.audio_in.on_pcm

                def on_pcm(pcm: bytes) -> None:
                    if "queued" in marks and "heard" not in marks:
                        x = np.frombuffer(pcm, "<i2").astype(float)
                        if np.sqrt((x**2).mean()) > 1000:
                            marks["heard"] = time.monotonic()
                    deliver(pcm)

                session.audio_in.on_pcm = on_pcm
                t = np.arange(8000) / 16_000
                tone = (np.sin(2 * np.pi * 300 * t) * 12_000).astype("<i2").tobytes()
                latencies = []
                for _ in range(trials):
                    marks.clear()
                    await asyncio.sleep(0.3)
                    marks["queued"] = time.monotonic()
                    peer.mic.play(tone)
                    await peer.mic.played()
                    await asyncio.sleep(0.2)
                    if "heard" in marks:
                        latencies.append(1000 * (marks["heard"] - marks["queued"]))
                await peer.close()
                return latencies
    finally:
        undo()
        webrtc_session.install_jitter = install


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()
    for buffer in ("ours", "aiortc"):
        ms = asyncio.run(trial_latencies(buffer, args.trials))
        ms.sort()
        p90 = ms[int(0.9 * (len(ms) - 1))]
        print(f"{buffer:>6} jitter buffer: p50 {statistics.median(ms):5.1f} ms, p90 {p90:5.1f} ms,"
              f" max {ms[-1]:5.1f} ms over {len(ms)} of {args.trials} tones")


if __name__ == "__main__":
    main()
