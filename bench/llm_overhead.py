"""What voice.llm adds to a turn: the openai SDK, HTTP and SSE to an OpenAI-compatible server that answers at once.

The fake model server (tests/fake_openai.py, every request answered instantly with the same text) runs in its own
process; the voice server (fake STT/TTS, instant) and the client share this one. Each of ``--turns`` sequential
turns is timed from the turn-ending frame handed to the socket to the first byte of reply audio and to the end of
the reply text, for an ``LLMAgent`` and for a plain ``VoiceAgent`` returning the same text.

    python bench/llm_overhead.py --turns 40
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.voice_latency import pct
from tests.harness import Client, LiveServer, free_port
from voice import TurnContext, VoiceAgent, create_app
from voice.llm import LLMAgent
from voice.testing import FakeTranscriber, FakeTTS, fake_speech_frame

ANSWER = "Sure, here is the answer you asked for. It comes in two sentences."

FAKE_MODEL_SERVER = f"""
import asyncio, sys
sys.path.insert(0, {ROOT!r})
from tests.fake_openai import FakeOpenAI, text_reply

async def main():
    fake = FakeOpenAI(default=lambda body: text_reply({ANSWER!r}))
    fake._server.port = int(sys.argv[1])
    async with fake:
        print("ready", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


class Fixed(VoiceAgent):
    async def on_turn(self, transcript: str, ctx: TurnContext) -> str:
        return ANSWER


async def run_turns(srv: LiveServer, agent: str, turns: int) -> tuple[list[float], list[float], list[float]]:
    c = await Client.connect(f"{srv.ws}/agents/{agent}/bench")
    await c.start_call()
    to_audio, to_text, first_text = [], [], []
    for i in range(turns):
        mark = c.mark()
        t0 = time.monotonic()
        await c.send(fake_speech_frame("final", f"question number {i}"))
        end = await c.wait_for("transcript_end", after=mark, timeout=10)
        metrics = await c.wait_for("metrics", after=mark, timeout=10)
        first_text.append(metrics["first_text_ms"])
        first_audio = next(t for t, m in c.messages[mark:] if isinstance(m, bytes))
        t_end = next(t for t, m in c.messages[mark:] if m is end)
        to_audio.append(1000 * (first_audio - t0))
        to_text.append(1000 * (t_end - t0))
        await asyncio.sleep(0.3)  # let the reply play out
    await c.close()
    return to_audio, to_text, first_text


async def measure(port: int, turns: int) -> dict[str, tuple[list[float], list[float], list[float]]]:
    llm = LLMAgent.configured(base_url=f"http://127.0.0.1:{port}/v1", model="bench", instructions="Be brief.")
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"llm": llm, "fixed": Fixed}, transcriber=FakeTranscriber(),
                         tts=FakeTTS(seconds_per_char=0.001), db_path=os.path.join(tmp, "v.db"))
        async with LiveServer(app) as srv:
            return {name: await run_turns(srv, name, turns) for name in ("fixed", "llm")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=40)
    args = ap.parse_args()
    port = free_port()
    fake = subprocess.Popen([sys.executable, "-c", FAKE_MODEL_SERVER, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None and fake.stdout.readline().strip() == "ready"
        results = asyncio.run(measure(port, args.turns))
    finally:
        fake.terminate()
        fake.wait()
    print("| agent | turns | first turn → audio ms | → audio p50 | p95 | → text end p50 | p95 "
          "| on_turn → 1st text p50 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, (audio, text, first) in results.items():
        rest_a, rest_t = audio[1:], text[1:]
        print(f"| {name} | {len(audio)} | {audio[0]:.1f} | {statistics.median(rest_a):.1f} | {pct(rest_a, 95):.1f} "
              f"| {statistics.median(rest_t):.1f} | {pct(rest_t, 95):.1f} | {statistics.median(first[1:]):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
