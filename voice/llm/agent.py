""":class:`LLMAgent`: a voice agent whose turns are answered by a model behind any OpenAI-compatible Chat Completions
endpoint (OpenAI, Ollama, vLLM, llama.cpp's server, LiteLLM), streamed so the first sentence is spoken while the
rest is still being generated.

::

    class Assistant(LLMAgent):
        model = "gpt-4o-mini"                     # or VOICE_LLM_MODEL
        instructions = "You are a friendly concierge. Answer in one or two short sentences."
        tools = [get_weather]                     # typed functions; @tool methods of the class count too
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, ClassVar

from ..agent import FLUSH, CallHandle, Flush, TurnContext, VoiceAgent
from ..reply import current_reply
from .client import LLMSettings, describe_error, get_client, require_openai
from .history import TOOL_CALL, to_chat_messages, tool_message
from .runner import ToolRunner
from .stream import Completion, read_stream
from .tools import Tool, collect_tools

log = logging.getLogger("voice.llm")

DEFAULT_INSTRUCTIONS = (
    "You are a helpful voice assistant. Your answers are spoken aloud, so reply in short, natural sentences, "
    "without markdown, lists, tables, code or emoji. Ask a brief question when the request is unclear."
)


class IncompleteReply(Exception):
    """The stream ended before the server said the reply was over (no ``finish_reason``)."""


class TooManyToolRounds(Exception):
    """The model kept calling tools past ``max_tool_rounds``."""


class LLMAgent(VoiceAgent):
    """Answers each turn with a streamed chat completion: the instructions, the conversation so far (including
    earlier tool calls) and the transcript go to the model; its text is spoken sentence by sentence as it
    arrives. Configure by subclassing (the runtime creates instances without arguments)."""

    #: model name; None: ``VOICE_LLM_MODEL``, else ``gpt-4o-mini``
    model: str | None = None
    #: OpenAI-compatible base URL (e.g. ``http://127.0.0.1:11434/v1``); None: ``VOICE_LLM_URL``, else OpenAI
    base_url: str | None = None
    #: None: ``VOICE_LLM_API_KEY``, else ``OPENAI_API_KEY`` (keyless servers need neither)
    api_key: str | None = None
    #: the system prompt
    instructions: str = DEFAULT_INSTRUCTIONS
    #: functions (or :class:`Tool`) the model may call, besides the class's ``@tool`` methods
    tools: Sequence[Tool | Callable[..., Any]] = ()
    #: sampling temperature (0-2); None: the server's default
    temperature: float | None = None
    #: more keyword arguments for ``chat.completions.create`` (e.g. ``max_completion_tokens``, ``extra_body``)
    request_options: ClassVar[dict[str, Any]] = {}
    #: said when a call starts; None: nothing
    greeting: str | None = None
    #: seconds one attempt may wait for the response to start, and for each next piece of it
    timeout: float = 15.0
    #: how often the SDK retries a 408/409/429/5xx, a failed connection or a timeout before the response started
    #: (it honours ``Retry-After``)
    max_retries: int = 2
    #: seconds the caller waits at most for the response to start, all attempts included
    max_wait: float = 30.0
    #: model responses with tool calls per turn, at most; the last round asks for an answer without tools
    max_tool_rounds: int = 5
    #: seconds a turn waits for tools still running from an interrupted turn, so their results are included
    outliving_tool_wait: float = 10.0
    #: spoken when the model cannot be reached or fails before saying anything
    apology_text: str = "Sorry, I can't answer right now. Please try again in a moment."
    #: spoken when the reply breaks off part-way
    broken_reply_text: str = "Sorry, I lost my train of thought. Could you say that again?"

    _runner: ToolRunner | None = None

    def __init__(self) -> None:
        super().__init__()
        # load the SDK and build the client (an SSL context, ~30 ms) when the instance is created, not in its
        # first turn; without the openai package this fails here, naming the extra
        require_openai()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # created outside the server: the client is made on first use
        get_client(self.settings())

    @classmethod
    def configured(cls, **attributes: Any) -> type[LLMAgent]:
        """A subclass with these class attributes set (None values are skipped), e.g. for ``voice serve
        --llm-url URL --llm-model NAME``. Raises :class:`~voice.llm.client.MissingOpenAI` at once without the
        ``openai`` package."""
        require_openai()
        unknown = [name for name in attributes if not hasattr(cls, name)]
        if unknown:
            raise TypeError(f"{cls.__name__} has no setting {', '.join(unknown)}")
        values = {name: value for name, value in attributes.items() if value is not None}
        return type(cls.__name__, (cls,), {"__module__": cls.__module__, "__doc__": cls.__doc__, **values})

    # --- configuration --------------------------------------------------------------------------------------------

    def settings(self) -> LLMSettings:
        """The endpoint, key and model this agent uses (class attributes, then the environment)."""
        return LLMSettings.resolve(
            base_url=self.base_url,
            api_key=self.api_key,
            model=self.model,
            timeout=self.timeout,
            max_retries=self.max_retries,
        )

    @property
    def runner(self) -> ToolRunner:
        """Runs this instance's tool calls and records them in its history."""
        if self._runner is None:
            self._runner = ToolRunner(collect_tools(self, self.tools), self._record_tool_call)
        return self._runner

    def _record_tool_call(self, content: str, meta: dict[str, Any]) -> None:
        self.add_message("tool", content, meta=meta)

    # --- hooks ------------------------------------------------------------------------------------------------

    async def on_call_start(self, call: CallHandle) -> None:
        """Say :attr:`greeting`, if any."""
        if self.greeting:
            await self.speak(call, self.greeting)

    def apology(self, error: Exception, mid_reply: bool) -> str:
        """What the caller hears when the model fails (``mid_reply``: after part of the answer was spoken)."""
        return self.broken_reply_text if mid_reply else self.apology_text

    async def chat_messages(self, transcript: str, ctx: TurnContext) -> list[dict[str, Any]]:
        """The request's ``messages``: instructions, history (tool calls rebuilt), the transcript."""
        await self.runner.settle(self.outliving_tool_wait)
        history = list(ctx.messages)
        known = {m["meta"].get("tool_call_id") for m in history if (m.get("meta") or {}).get("kind") == TOOL_CALL}
        history += [m for m in self.runner.take_recorded() if m["meta"]["tool_call_id"] not in known]
        system = [{"role": "system", "content": self.instructions}] if self.instructions else []
        return [*system, *to_chat_messages(history), {"role": "user", "content": transcript}]

    async def on_turn(self, transcript: str, ctx: TurnContext) -> AsyncIterator[str | Flush]:  # type: ignore[override]
        """Stream the model's answer; run the tools it calls (the text before a call is spoken first) and go on
        until it answers without tools. A failure is logged and answered with a short spoken apology."""
        settings = self.settings()
        messages = await self.chat_messages(transcript, ctx)
        said = ""
        for round_number in range(self.max_tool_rounds + 1):
            completion = Completion()
            last = round_number == self.max_tool_rounds
            try:
                async for piece in self._complete(settings, messages, completion, last_round=last):
                    if isinstance(piece, Flush):
                        yield FLUSH
                        continue
                    if said and completion.text == piece and not said[-1].isspace() and not piece[0].isspace():
                        piece = " " + piece  # a new round's first words after the previous round's
                    said += piece
                    yield piece
                if not completion.finished:
                    raise IncompleteReply("the stream ended without a finish_reason")
                if completion.tool_calls and last:
                    raise TooManyToolRounds(f"still calling tools after {self.max_tool_rounds} rounds")
            except Exception as exc:  # noqa: BLE001 - any failure of the model becomes an apology
                log.warning("LLM reply failed on %s (%s): %s", ctx.call.id, settings.model,
                            describe_error(exc, settings.api_key))
                ctx.call.send_error(f"the language model failed: {type(exc).__name__}", "llm_failed")
                mid_reply = bool(said.strip())
                # after a broken-off sentence ("And then"), the apology is a sentence of its own
                separator = ("" if said.rstrip()[-1] in ".!?…" else "…") + " " if mid_reply else ""
                yield separator + self.apology(exc, mid_reply)
                return
            if not completion.tool_calls:
                return
            await _until_committed()
            results = await self.runner.run_batch(completion.tool_calls, completion.text)
            messages += [completion.assistant_message(), *(tool_message(r.call.id, r.content) for r in results)]

    async def _complete(
        self, settings: LLMSettings, messages: list[dict[str, Any]], completion: Completion, *, last_round: bool
    ) -> AsyncIterator[str | Flush]:
        """One streamed request. Closing this generator (the turn was interrupted) closes the HTTP stream."""
        request: dict[str, Any] = {"model": settings.model, "messages": messages, "stream": True}
        if self.temperature is not None:
            request["temperature"] = self.temperature
        tools = self.runner.tools
        if tools:
            request["tools"] = [t.spec() for t in tools.values()]
            if last_round:
                request["tool_choice"] = "none"
        request |= self.request_options
        async with asyncio.timeout(self.max_wait):
            stream = await get_client(settings).chat.completions.create(**request)
        async with stream:
            async for piece in read_stream(stream, completion):
                yield piece


async def _until_committed() -> None:
    """Tools have effects, so a speculative turn (started on an eager end of turn, maybe abandoned if the user
    goes on talking) runs them only once it is the real turn."""
    reply = current_reply()
    if reply is not None:
        await reply.until_released()
