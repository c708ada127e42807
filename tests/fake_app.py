"""A server app on the fake providers, for tests that run it in a subprocess (kill, restart, drain)."""

import asyncio
import os

from voice import TurnContext, VoiceAgent, create_app
from voice.testing import FakeTranscriber, FakeTTS


class Worker(VoiceAgent):
    async def on_turn(self, transcript: str, ctx: TurnContext):
        if transcript.startswith("remind"):
            await self.schedule(1.0, "remind", {"what": transcript})
            return "I will remind you."
        if transcript.startswith("slow"):
            await asyncio.sleep(1.0)
        return f"Done: {transcript}."

    async def remind(self, payload):
        await self.speak_all(f"Reminder: {payload['what']}.")


app = create_app(
    {"worker": Worker},
    transcriber=FakeTranscriber(),
    tts=FakeTTS(seconds_per_char=0.005),
    db_path=os.environ["VOICE_DB"],
    drain_seconds=5,
)
