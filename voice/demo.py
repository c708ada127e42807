"""The built-in demo behind ``voice serve``: an ``assistant`` that echoes what it heard, and a ``dictation`` agent."""

from __future__ import annotations

from .agent import CallHandle, TurnContext, VoiceAgent, VoiceInputAgent


class EchoAssistant(VoiceAgent):
    """Greets on call start and answers every turn with "You said: …"."""

    async def on_call_start(self, call: CallHandle) -> None:
        """Greet."""
        await self.speak(call, "Hi! Say something and I will repeat it.")

    async def on_turn(self, transcript: str, ctx: TurnContext) -> str:
        """Repeat what was heard."""
        return f"You said: {transcript}"

    async def on_dtmf(self, digit: str, call: CallHandle) -> None:
        """Say which key was pressed."""
        await self.speak(call, f"You pressed {digit}.")


class Dictation(VoiceInputAgent):
    """Dictation only: the transcript is shown and stored; nothing is spoken."""


DEMO_AGENTS = {"assistant": EchoAssistant, "dictation": Dictation}
