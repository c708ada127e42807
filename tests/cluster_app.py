"""What each ``voice serve`` process of ``tests/test_cluster.py`` runs: one agent on the fake providers (a tone-driven
transcriber on phone calls, where the fake's marker frames do not survive μ-law), its history on
``VOICE_DATABASE_URL``, Twilio mounted from ``TWILIO_AUTH_TOKEN`` / ``VOICE_PUBLIC_URL`` / ``TWILIO_API_URL``.

The agent answers "Done: <what you said>." and understands a few commands, typed or spoken:

- ``what did I say`` — sends ``{"type": "context", "messages": [...]}`` with the contents of ``ctx.messages``;
- ``announce <text>`` — ``speak_all("Announcement: <text>")``;
- ``schedule <count> <first> <last> <tag>`` — ``count`` schedules due ``first`` … ``last`` seconds from now, each
  storing ``tick <tag> <n> by <pid>`` in the history when it fires;
- ``explode <tag>`` — a schedule due at once whose method stores ``explode <tag> by <pid>`` and raises;
- ``slow …`` — answers after a second.

``GET /agents/{agent}/{instance}/whoami`` says which process serves the instance (the balancer hashes that path as
it hashes the instance's calls).
"""

from __future__ import annotations

import asyncio
import os

from adapters.twilio import maybe_mount_twilio
from tests.twilio_sim import ToneTranscriber
from voice import TurnContext, VoiceAgent, create_app
from voice.testing import FakeTranscriber, FakeTTS

PID = os.getpid()
PHONE_STT = ToneTranscriber(default_text="hello phone")


class Worker(VoiceAgent):
    def create_transcriber(self, call):
        return PHONE_STT if "callSid" in call.query else super().create_transcriber(call)

    async def on_turn(self, transcript: str, ctx: TurnContext):
        command, _, rest = transcript.partition(" ")
        if transcript == "what did I say":
            ctx.call.send_json({"type": "context", "messages": [m["content"] for m in ctx.messages], "pid": PID})
            return "Here is what you said."
        if command == "announce":
            await self.speak_all(f"Announcement: {rest}")
            return "Announced."
        if command == "schedule":
            count, first, last, tag = rest.split()
            n = int(count)
            for i in range(n):
                due = float(first) + (float(last) - float(first)) * i / max(1, n - 1)
                await self.schedule(due, "tick", {"tag": tag, "n": i})
            return f"Scheduled {n}."
        if command == "explode":
            await self.schedule(0.0, "explode", {"tag": rest})
            return "Armed."
        if command == "slow":
            await asyncio.sleep(1.0)
        return f"Done: {transcript}."

    async def tick(self, payload):
        await self.add_message("event", f"tick {payload['tag']} {payload['n']} by {PID}")

    async def explode(self, payload):
        await self.add_message("event", f"explode {payload['tag']} by {PID}")
        raise RuntimeError("this schedule always fails")


app = create_app(
    {"worker": Worker},
    transcriber=FakeTranscriber(),
    tts=FakeTTS(seconds_per_char=0.005),
    db_path=os.environ.get("VOICE_DB", "voice.db"),
    drain_seconds=5,
    schedule_retry_seconds=0.3,
)


@app.get("/agents/{agent}/{instance}/whoami")
async def whoami(agent: str, instance: str) -> dict[str, int]:
    return {"pid": PID}


maybe_mount_twilio(app)
