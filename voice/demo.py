"""The built-in demo behind ``voice serve``: an ``assistant`` that echoes what it heard (or, with an LLM configured,
answers with it), and a ``dictation`` agent."""

from __future__ import annotations

import os

from .agent import BaseAgent, CallHandle, TurnContext, VoiceAgent, VoiceInputAgent

#: the demo asks "Are you still there?" after this much silence (VOICE_USER_IDLE_SECONDS; the library's default is off)
IDLE_SECONDS = 15.0


class EchoAssistant(VoiceAgent):
    """Greets on call start, answers every turn with "You said: …", checks on a caller who goes silent."""

    async def on_call_start(self, call: CallHandle) -> None:
        """Greet."""
        await self.speak(call, "Hi! Say something and I will repeat it.")

    async def on_turn(self, transcript: str, ctx: TurnContext) -> str:
        """Repeat what was heard."""
        return f"You said: {transcript}"

    async def on_dtmf(self, digit: str, call: CallHandle) -> None:
        """Say which key was pressed."""
        await self.speak(call, f"You pressed {digit}.")

    async def on_user_idle(self, call: CallHandle, idle_seconds: float) -> None:
        """Ask once; on a phone line, hang up when the caller stays silent after that."""
        first = self._host.settings.user_idle_seconds or IDLE_SECONDS
        if idle_seconds > first and call.transport == "twilio":
            await self.speak(call, "I'll hang up now. Goodbye!")
            await call.hangup()
        else:
            await self.speak(call, "Are you still there?")


class Dictation(VoiceInputAgent):
    """Dictation only: the transcript is shown and stored; nothing is spoken."""


DEMO_AGENTS = {"assistant": EchoAssistant, "dictation": Dictation}


def demo_agents(llm_url: str | None = None, llm_model: str | None = None) -> dict[str, type[BaseAgent]]:
    """The demo's agents. Given an LLM (these arguments, or ``VOICE_LLM_URL`` / ``VOICE_LLM_MODEL``), ``assistant``
    is a :class:`voice.llm.LLMAgent` on it (raises :class:`voice.llm.MissingOpenAI` without the ``openai`` package)."""
    from .llm.client import ENV_MODEL, ENV_URL

    url, model = llm_url or os.environ.get(ENV_URL), llm_model or os.environ.get(ENV_MODEL)
    if not (url or model):
        return dict(DEMO_AGENTS)
    from .llm import LLMAgent

    assistant = LLMAgent.configured(base_url=url, model=model, greeting="Hi! How can I help?")
    return dict(DEMO_AGENTS, assistant=assistant)
