"""Running the tool calls of one model response: concurrently, each answered (errors included), each recorded.

When the turn is interrupted while tools run, an ``interruptible`` tool is cancelled and forgotten; any other one
runs to completion in the background and is recorded when it finishes, so the next turn can tell the model.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .history import tool_record
from .stream import ToolCall
from .tools import Tool, format_result

log = logging.getLogger("voice.llm")


@dataclass
class ToolResult:
    """The answer to one call: the text the model reads, and whether it reports a failure."""

    call: ToolCall
    content: str
    error: bool = False


async def run_tool(tools: dict[str, Tool], call: ToolCall) -> ToolResult:
    """Run one call. An unknown tool, arguments that are not a JSON object or do not fit the signature, and an
    exception inside the tool all become an error result the model can read; only cancellation propagates."""
    tool = tools.get(call.name)
    if tool is None:
        known = ", ".join(sorted(tools)) or "none"
        return ToolResult(call, f"Error: there is no tool named {call.name!r} (available: {known}).", True)
    try:
        arguments = json.loads(call.arguments) if call.arguments.strip() else {}
    except json.JSONDecodeError as exc:
        return ToolResult(call, f"Error: the arguments are not valid JSON ({exc.msg} at position {exc.pos}).", True)
    started = time.monotonic()
    try:
        value = await tool.invoke(arguments)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the model hears about any failure of the tool
        log.warning("tool %s failed: %s: %s", call.name, type(exc).__name__, exc)
        return ToolResult(call, f"Error: {type(exc).__name__}: {exc}", True)
    log.info("tool %s ran in %.0f ms", call.name, 1000 * (time.monotonic() - started))
    return ToolResult(call, format_result(value))


class ToolRunner:
    """Runs batches of calls for one agent instance and stores each finished call with ``record(content, meta)``.
    Keeps the calls that outlive an interrupted turn until they are recorded."""

    def __init__(self, tools: dict[str, Tool], record: Callable[[str, dict[str, Any]], Any]) -> None:
        self.tools = tools
        self.record = record
        #: calls still running after their turn was interrupted
        self.outliving: set[asyncio.Task[ToolResult]] = set()
        #: history messages recorded since :meth:`take_recorded` was last called
        self._recorded: list[dict[str, Any]] = []

    async def run_batch(self, calls: list[ToolCall], text_before: str) -> list[ToolResult]:
        """Run ``calls`` concurrently; results in call order. ``text_before``: what the model said before them."""
        batch = calls[0].id if calls else ""
        tasks = [asyncio.create_task(run_tool(self.tools, call), name=f"tool-{call.name}") for call in calls]

        def store(index: int, result: ToolResult) -> None:
            content, meta = tool_record(
                result.call, result.content, error=result.error, batch=batch, index=index, text_before=text_before
            )
            self.record(content, meta)
            self._recorded.append({"role": "tool", "content": content, "meta": meta})

        try:
            await asyncio.wait(tasks)  # waiting does not cancel them: an interruption is handled below
        except asyncio.CancelledError:
            for index, (call, task) in enumerate(zip(calls, tasks, strict=True)):
                if task.done():
                    if not task.cancelled():
                        store(index, task.result())
                elif self._interruptible(call):
                    task.cancel()
                else:
                    log.info("tool %s keeps running after the interruption", call.name)
                    self.outliving.add(task)
                    task.add_done_callback(functools.partial(self._finish_outliving, index=index, store=store))
            raise
        results = [task.result() for task in tasks]
        for index, result in enumerate(results):
            store(index, result)
        return results

    def _interruptible(self, call: ToolCall) -> bool:
        tool = self.tools.get(call.name)
        return tool is None or tool.interruptible

    def _finish_outliving(
        self, task: asyncio.Task[ToolResult], index: int, store: Callable[[int, ToolResult], None]
    ) -> None:
        self.outliving.discard(task)
        if not task.cancelled():
            store(index, task.result())

    async def settle(self, timeout: float) -> None:  # noqa: ASYNC109 - a bounded wait, not a cancellation
        """Wait (up to ``timeout`` s) for the calls that outlived an interrupted turn, so the next request can
        carry their results."""
        if self.outliving:
            await asyncio.wait(set(self.outliving), timeout=timeout)

    def take_recorded(self) -> list[dict[str, Any]]:
        """The calls recorded since the last time this was called, as history messages (a turn's ``ctx.messages``
        was taken when it started, so it may lack a call that finished after an interruption)."""
        recorded, self._recorded = self._recorded, []
        return recorded
