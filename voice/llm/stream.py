"""Reading one streamed chat completion: text deltas as they arrive, tool calls put together from their fragments.

Fragments are accumulated by ``index``; the first ``id`` and ``name`` win and ``arguments`` pieces are appended, as
OpenAI, vLLM and llama.cpp send them. A fragment whose ``id`` differs from the one at its index starts a new call
(older Ollama and LiteLLM routes put every parallel call at index 0). A reply counts as complete only once a
``finish_reason`` was seen: a stream that just ends is a broken reply.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ..agent import FLUSH, Flush


@dataclass
class ToolCall:
    """One call the model asked for; ``arguments`` is the JSON text exactly as the model produced it."""

    id: str
    name: str
    arguments: str = ""

    def message_entry(self) -> dict[str, Any]:
        """This call as an entry of an assistant message's ``tool_calls``."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class Completion:
    """What one streamed response amounted to."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Any = None

    @property
    def finished(self) -> bool:
        """The server said the reply was over (a stream cut short never says so)."""
        return self.finish_reason is not None

    def assistant_message(self) -> dict[str, Any]:
        """The assistant message that goes back to the model with the tool results."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [call.message_entry() for call in self.tool_calls]
        return message


class _ToolCallAssembler:
    def __init__(self, completion: Completion) -> None:
        self.completion = completion
        self.by_index: dict[int, ToolCall] = {}

    def add(self, fragment: Any) -> None:
        index = getattr(fragment, "index", None)
        if index is None:
            index = len(self.completion.tool_calls)
        function = getattr(fragment, "function", None)
        name = getattr(function, "name", None) or ""
        arguments = getattr(function, "arguments", None) or ""
        frag_id = getattr(fragment, "id", None)
        current = self.by_index.get(index)
        if current is None or (frag_id and frag_id != current.id):
            current = ToolCall(frag_id or f"call_{uuid.uuid4().hex[:24]}", name, arguments)
            self.by_index[index] = current
            self.completion.tool_calls.append(current)
            return
        if name and not current.name:
            current.name = name
        current.arguments += arguments


async def read_stream(chunks: AsyncIterator[Any], completion: Completion) -> AsyncIterator[str | Flush]:
    """Yield the text of ``chunks`` (``chat.completion.chunk`` objects) as it arrives, and :data:`FLUSH` when the
    first tool call starts after some text (so what was said before the call is spoken at once). Fills
    ``completion`` with the text, the tool calls, the ``finish_reason`` and the usage."""
    assembler = _ToolCallAssembler(completion)
    flushed = False
    async for chunk in chunks:
        if getattr(chunk, "usage", None) is not None:
            completion.usage = chunk.usage
        for choice in getattr(chunk, "choices", None) or ():
            if getattr(choice, "index", 0) not in (0, None):
                continue
            delta = getattr(choice, "delta", None)
            content = getattr(delta, "content", None)
            if content:
                completion.text += content
                yield content
            for fragment in getattr(delta, "tool_calls", None) or ():
                assembler.add(fragment)
                if not flushed and completion.text.strip():
                    flushed = True
                    yield FLUSH
            if getattr(choice, "finish_reason", None):
                completion.finish_reason = choice.finish_reason
