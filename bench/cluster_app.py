"""The app each ``voice serve`` process of the cluster benchmarks runs (``voice serve bench.cluster_app:app``):
instant fake providers, history in ``VOICE_DATABASE_URL`` (else ``VOICE_DB``).

- ``assistant`` answers every turn "Okay." (as bench/fake_server.py does, for the overhead load client);
- ``announcer``, on a typed ``announce <n>``, stamps the monotonic clock (one clock for every process of a host),
  calls ``speak_all``, and sends ``{"type": "announced", "n": n, "at": <stamp>}`` to its own caller.
"""

from __future__ import annotations

import os
import time

from voice import TurnContext, VoiceAgent, create_app
from voice.testing import FakeTranscriber, FakeTTS


class Bench(VoiceAgent):
    async def on_turn(self, transcript: str, ctx: TurnContext):
        return "Okay."


class Announcer(VoiceAgent):
    async def on_turn(self, transcript: str, ctx: TurnContext):
        if transcript.startswith("announce "):
            at = time.monotonic()
            await self.speak_all(transcript)
            ctx.call.send_json({"type": "announced", "n": int(transcript.split()[1]), "at": at})
        return None


app = create_app(
    {"assistant": Bench, "announcer": Announcer},
    transcriber=FakeTranscriber(),
    tts=FakeTTS(seconds_per_char=0.02),  # 0.1 s of audio for "Okay.", as in bench/fake_server.py
    db_path=os.environ.get("VOICE_DB", "bench.db"),
    audio_realtime_factor=10.0,
    max_connections=5000,
    max_connections_per_client=5000,
)
