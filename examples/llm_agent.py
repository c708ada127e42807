"""A streaming LLM agent: tokens are spoken sentence by sentence while they arrive; an interruption cancels the
request. Replace `fake_llm` with your client (OpenAI, Anthropic, a local model…).

    voice serve examples.llm_agent:app
"""

import asyncio

from voice import TurnContext, VoiceAgent, create_app


async def fake_llm(messages: list[dict], prompt: str):
    for word in f"Let me think about {prompt}. Here is a thought. And here is another one.".split():
        await asyncio.sleep(0.03)
        yield word + " "


class Assistant(VoiceAgent):
    async def on_call_start(self, call):
        await self.speak(call, "Hello! Ask me anything.")

    async def on_turn(self, transcript: str, ctx: TurnContext):
        async for token in fake_llm(ctx.messages, transcript):
            if ctx.cancelled.is_set():
                return
            yield token

    async def remind(self, payload):
        await self.speak_all(f"Reminder: {payload}")


app = create_app({"assistant": Assistant})
