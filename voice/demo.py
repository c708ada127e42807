"""The built-in demo behind ``voice serve``: an ``assistant`` that echoes what it heard, and a ``dictation`` agent."""

from __future__ import annotations

from .agent import TurnContext, VoiceAgent, VoiceInputAgent
from .call import Call


class EchoAssistant(VoiceAgent):
    """Greets on call start and answers every turn with "You said: …"."""

    async def on_call_start(self, call: Call) -> None:
        await self.speak(call, "Hi! Say something and I will repeat it.")

    async def on_turn(self, transcript: str, ctx: TurnContext) -> str:
        return f"You said: {transcript}"

    async def on_dtmf(self, digit: str, call: Call) -> None:
        await self.speak(call, f"You pressed {digit}.")


class Dictation(VoiceInputAgent):
    """Dictation only: the transcript is shown and stored; nothing is spoken."""


DEMO_AGENTS = {"assistant": EchoAssistant, "dictation": Dictation}
