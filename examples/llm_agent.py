"""An LLM that talks, with tools: any OpenAI-compatible server (OpenAI, Ollama, vLLM, llama.cpp, LiteLLM).
Its words are spoken sentence by sentence as they stream in; an interruption closes the request; tool calls and
their results are kept in the shared history. Needs ``pip install 'voice[openai]'``.

    VOICE_LLM_URL=http://127.0.0.1:11434/v1 VOICE_LLM_MODEL=llama3.2 voice serve examples.llm_agent:app   # Ollama
    OPENAI_API_KEY=sk-... VOICE_LLM_MODEL=gpt-4o-mini voice serve examples.llm_agent:app                  # OpenAI
"""

from datetime import datetime
from zoneinfo import ZoneInfo

from voice import create_app
from voice.llm import LLMAgent, tool


def current_time(timezone: str = "UTC") -> str:
    """The current date and time somewhere.

    Args:
        timezone: an IANA time zone name, e.g. "Europe/Paris"
    """
    return datetime.now(ZoneInfo(timezone)).strftime("%A %d %B %Y, %H:%M")


class Assistant(LLMAgent):
    instructions = "You are a friendly voice assistant. Answer in one or two short spoken sentences."
    greeting = "Hello! Ask me anything."
    tools = (current_time,)

    @tool(interruptible=False)  # once asked for, the reminder is set even if the user talks over the answer
    async def set_reminder(self, what: str, minutes: float) -> str:
        """Remind the user of something later (spoken, even after a restart).

        Args:
            what: what to remind them of
            minutes: in how many minutes
        """
        await self.schedule(minutes * 60, "remind", what)
        return f"Reminder set for {minutes:g} minutes from now."

    async def remind(self, payload: str) -> None:
        await self.speak_all(f"Reminder: {payload}")


app = create_app({"assistant": Assistant})
