"""A voice server with instant fake providers, for measuring the pipeline's own overhead.

    taskset -c 0 python bench/fake_server.py --port 8765
"""

import argparse
import logging
import os
import sys
import tempfile

import uvicorn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from voice import TurnContext, VoiceAgent, create_app  # noqa: E402
from voice.testing import FakeTranscriber, FakeTTS  # noqa: E402


class Bench(VoiceAgent):
    async def on_turn(self, transcript: str, ctx: TurnContext):
        return "Okay."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--db", default=os.path.join(tempfile.mkdtemp(), "bench.db"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # 0.1 s of audio per reply, so replies end well before the next turn marker
    app = create_app({"assistant": Bench}, transcriber=FakeTranscriber(), tts=FakeTTS(seconds_per_char=0.02),
                     db_path=a.db, audio_realtime_factor=10.0,
                     max_connections=5000, max_connections_per_client=5000)
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", loop="uvloop", http="httptools",
                ws="websockets", ws_max_size=1 << 20, ws_ping_interval=None)


if __name__ == "__main__":
    main()
