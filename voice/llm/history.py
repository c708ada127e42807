"""Tool calls in the voice history, and the history as Chat Completions messages.

Each finished tool call is stored as one ``tool`` message: readable text (``get_weather(city="Paris") → {...}``)
plus ``meta`` holding what the model needs again: the call id, name, JSON arguments, result, the batch it was part
of (the calls of one model response) and the text the model said before calling it. :func:`to_chat_messages`
turns ``ctx.messages`` back into the exact sequence the model saw: the assistant message with its ``tool_calls``,
then one ``tool`` message per call, then the rest of the reply.
"""

from __future__ import annotations

import json
from typing import Any

from .stream import ToolCall

#: ``meta["kind"]`` of a stored tool call
TOOL_CALL = "tool_call"


def tool_record(
    call: ToolCall, result: str, *, error: bool, batch: str, index: int, text_before: str
) -> tuple[str, dict[str, Any]]:
    """(content, meta) of the history message for one finished call."""
    meta = {
        "kind": TOOL_CALL,
        "tool_call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "result": result,
        "error": error,
        "batch": batch,
        "index": index,
        "text_before": text_before,
    }
    return f"{call.name}({_readable_arguments(call.arguments)}) → {result}", meta


def _readable_arguments(arguments: str) -> str:
    try:
        parsed = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return arguments
    if not isinstance(parsed, dict):
        return arguments
    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in parsed.items())


def tool_message(tool_call_id: str, result: str) -> dict[str, Any]:
    """The ``tool`` message answering one call."""
    return {"role": "tool", "tool_call_id": tool_call_id, "content": result}


def _norm(text: str) -> str:
    return " ".join(text.split())


def _after_prefix(content: str, prefix: str) -> str:
    """``content`` without the text already sent as ``prefix`` (whitespace-insensitive). A reply interrupted
    before the end of ``prefix`` (only part of it was heard) leaves nothing."""
    content_n, prefix_n = _norm(content), _norm(prefix)
    if not prefix_n:
        return content
    if content_n.startswith(prefix_n):
        return content_n[len(prefix_n) :].strip()
    if prefix_n.startswith(content_n):
        return ""
    return content


def to_chat_messages(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``ctx.messages`` → Chat Completions messages. Stored tool calls become an assistant message with
    ``tool_calls`` followed by their ``tool`` messages (calls of one batch together, in the order the model made
    them); the assistant reply stored after them loses the text that already went into those assistant messages.
    Messages of other roles without tool meta are left out (the model could not place them)."""
    out: list[dict[str, Any]] = []
    said_before_tools: list[str] = []  # text_before of the batches since the last plain message
    group: list[dict[str, Any]] = []  # the records of the batch being assembled

    def close_group() -> None:
        if not group:
            return
        group.sort(key=lambda meta: meta.get("index", 0))
        text_before = group[0].get("text_before") or ""
        previous = out[-1] if out else None
        if (
            previous is not None
            and previous["role"] == "assistant"
            and "tool_calls" not in previous
            and text_before.strip()
            and _after_prefix(previous["content"], text_before) == ""
        ):
            out.pop()  # an interrupted turn stored what was heard of it before a late tool's result
        out.append(
            {
                "role": "assistant",
                "content": text_before or None,
                "tool_calls": [
                    ToolCall(m["tool_call_id"], m["name"], m.get("arguments") or "").message_entry() for m in group
                ],
            }
        )
        out.extend(tool_message(m["tool_call_id"], str(m.get("result", ""))) for m in group)
        said_before_tools.append(text_before)
        group.clear()

    for message in history:
        role, content = message.get("role"), message.get("content") or ""
        meta = message.get("meta") or {}
        if role == "tool" and meta.get("kind") == TOOL_CALL:
            if group and group[0].get("batch") != meta.get("batch"):
                close_group()
            group.append(meta)
            continue
        close_group()
        if role == "assistant":
            rest = _after_prefix(content, " ".join(said_before_tools))
            said_before_tools.clear()
            if rest.strip():
                out.append({"role": "assistant", "content": rest})
        elif role in ("user", "system", "developer"):
            said_before_tools.clear()
            out.append({"role": role, "content": content})
    close_group()
    return out
