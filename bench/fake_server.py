"""A voice server with instant fake providers, for measuring the pipeline's own overhead.

    taskset -c 0 python bench/fake_server.py --port 8765                         # "Okay." (0.1 s of audio)
    taskset -c 0 python bench/fake_server.py --port 8765 --reply two-sentences   # the equal-work reply

``--reply two-sentences`` is the equal-work load the peer harnesses use: ``on_turn`` streams two sentences, the fake
TTS makes exactly 1.0 s of audio of each (2 s per reply, ready at once).
"""

import argparse
import logging
import os
import sys
import tempfile

import uvicorn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from voice import AudioChunk, TurnContext, VoiceAgent, create_app  # noqa: E402
from voice.testing import FakeTranscriber, FakeTTS  # noqa: E402
from voice.transports.uvicorn_ws import VoiceWebSocketProtocol  # noqa: E402

SENTENCES = ("Here is the first of two sentences. ", "And here is the second one for you.")


class Bench(VoiceAgent):
    async def on_turn(self, transcript: str, ctx: TurnContext):
        return "Okay."


class TwoSentences(VoiceAgent):
    async def on_turn(self, transcript: str, ctx: TurnContext):
        for sentence in SENTENCES:
            yield sentence


class SecondPerSentenceTTS(FakeTTS):
    """Exactly ``seconds`` of tone per sentence, computed once (an instant provider)."""

    def __init__(self, seconds: float = 1.0) -> None:
        super().__init__()
        self.seconds = seconds
        self._tones: dict[int, bytes] = {}

    async def synthesize(self, text, cancel=None, *, encoding="pcm16", sample_rate=None) -> AudioChunk:
        rate = sample_rate or self.sample_rate
        tone = self._tones.get(rate)
        if tone is None:
            tone = self._tones[rate] = self.audio_for("x" * int(self.seconds * 100), rate)  # 0.01 s per char
        return AudioChunk(tone, rate)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--db", default=os.path.join(tempfile.mkdtemp(), "bench.db"))
    ap.add_argument("--reply", choices=["okay", "two-sentences"], default="okay")
    ap.add_argument("--ws", default="voice", help="uvicorn's WebSocket implementation; voice: the one `voice serve` "
                    "uses (voice.transports.uvicorn_ws)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if a.reply == "okay":  # 0.1 s of audio per reply, so replies end well before the next turn marker
        agent, tts = Bench, FakeTTS(seconds_per_char=0.02)
    else:
        agent, tts = TwoSentences, SecondPerSentenceTTS(1.0)
    app = create_app({"assistant": agent}, transcriber=FakeTranscriber(), tts=tts,
                     db_path=a.db, audio_realtime_factor=10.0,
                     max_connections=5000, max_connections_per_client=5000)
    ws = VoiceWebSocketProtocol if a.ws == "voice" else a.ws
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", loop="uvloop", http="httptools",
                ws=ws, ws_max_size=1 << 20, ws_ping_interval=None)


if __name__ == "__main__":
    main()
