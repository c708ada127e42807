"""The offline stack behind the end-to-end latency benchmark: an echo agent on Whisper tiny.en and Piper.

    python bench/local_app.py --port 8766 [--naive]

``--naive`` is the baseline the issue describes: wait 600 ms of silence, then transcribe.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from voice import TurnContext, VoiceAgent, create_app  # noqa: E402
from voice.cli import DrainingServer  # noqa: E402
from voice.local import PiperTTS, WhisperTranscriber  # noqa: E402


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
    a = ap.parse_args()
    stt = WhisperTranscriber(early_transcribe_ms=None, end_silence_ms=600) if a.naive else WhisperTranscriber()
    app = create_app({"echo": Echo}, transcriber=stt, tts=PiperTTS(), webrtc=False,
                     db_path=os.path.join(tempfile.mkdtemp(), "bench.db"), max_connections_per_client=500)
    config = uvicorn.Config(app, host="127.0.0.1", port=a.port, log_level="warning")
    DrainingServer(config, app.state.voice).run()


if __name__ == "__main__":
    main()
