"""The offline stack behind the end-to-end latency benchmark: an echo agent on Whisper tiny.en and Piper.

    python bench/local_app.py --port 8766 [--naive]

``--naive`` is the baseline the issue describes: wait 600 ms of silence, then transcribe.
"""

import argparse
import json
import os
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from voice import TurnContext, VoiceAgent, create_app  # noqa: E402
from voice.cli import DrainingServer  # noqa: E402
from voice.local import PiperTTS, WhisperTranscriber, shared_scheduler  # noqa: E402

LONG = (" Here is a longer answer, so that there is time to talk over me: the weather will stay mild all week, with"
        " a little rain on Thursday and sunshine again by the weekend.")


class Echo(VoiceAgent):
    async def on_turn(self, transcript: str, ctx: TurnContext):
        return f"You said: {transcript}" + (LONG if ctx.call.query.get("long") else "")


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--naive", action="store_true")
    ap.add_argument("--stats", help="on exit, write what the model queue ran to this JSON file")
    a = ap.parse_args()
    stt = WhisperTranscriber(early_transcribe_ms=None, end_silence_ms=600) if a.naive else WhisperTranscriber()
    app = create_app({"echo": Echo}, transcriber=stt, tts=PiperTTS(), webrtc=False,
                     db_path=os.path.join(tempfile.mkdtemp(), "bench.db"), max_connections_per_client=500)
    config = uvicorn.Config(app, host="127.0.0.1", port=a.port, log_level="warning")
    # uvicorn re-raises the SIGTERM that stopped it once it is done, to the handler found before it ran: a Python
    # one lets the stats below be written (the default one ended the process first, and the stats came out empty)
    signal.signal(signal.SIGTERM, lambda *_: None)
    DrainingServer(config, app.state.voice).run()
    if a.stats:
        queue = stt._runtime.scheduler
        with open(a.stats, "w") as f:
            json.dump({**shared_scheduler().stats(), "interims_folded": queue.folded,
                       "interim_decodes_skipped": queue.skipped}, f)


if __name__ == "__main__":
    main()
