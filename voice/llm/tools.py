"""Tools the model may call: typed Python functions (sync or async) described to it by their signature and docstring.

::

    @tool
    async def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
        \"\"\"Current weather in a city.

        Args:
            city: the city's name, e.g. "Paris"
        \"\"\"

    @tool(interruptible=False)       # runs to completion even if the user interrupts; its result is kept
    def book_table(name: str, people: int) -> str: ...

A ``@tool`` method of an :class:`~voice.llm.LLMAgent` subclass is bound to the agent instance (``self``).
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Union, overload

from .schema import function_schema, type_hints

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class Tool:
    """One function the model can call: its name, description, parameter schema and whether an interruption of
    the turn cancels it (``interruptible``). Calling the Tool calls the function."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        interruptible: bool = True,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        if not _NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r}: use 1-64 of a-z, A-Z, 0-9, _ and -")
        doc_description, self.parameters = function_schema(fn)
        self.description = description if description is not None else doc_description
        self.interruptible = interruptible
        params = list(inspect.signature(fn).parameters)
        self._is_method = bool(params) and params[0] in ("self", "cls")
        self._hints = type_hints(fn)
        self._bound_to: Any = None

    def spec(self) -> dict[str, Any]:
        """The entry of the request's ``tools`` list."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function itself (a tool stays an ordinary callable)."""
        if self._bound_to is not None:
            return self.fn(self._bound_to, *args, **kwargs)
        return self.fn(*args, **kwargs)

    def __get__(self, obj: Any, objtype: type | None = None) -> Tool:
        """A ``@tool`` method read from an instance is bound to it."""
        if obj is None or not self._is_method:
            return self
        bound = object.__new__(Tool)
        bound.__dict__.update(self.__dict__)
        bound._bound_to = obj
        return bound

    def __repr__(self) -> str:
        return f"<Tool {self.name}{' (not interruptible)' if not self.interruptible else ''}>"

    async def invoke(self, arguments: dict[str, Any]) -> Any:
        """Run with the model's (JSON-decoded) arguments. Enum parameters get their members; a sync function runs
        in a worker thread. Raises TypeError/ValueError for arguments that do not fit the signature."""
        if not isinstance(arguments, dict):
            raise TypeError(f"arguments must be a JSON object, not {type(arguments).__name__}")
        converted = {name: self._convert(name, value) for name, value in arguments.items()}
        signature = inspect.signature(self.fn)
        receiver = (self._bound_to,) if self._bound_to is not None else ()
        signature.bind(*receiver, **converted)  # missing or unknown arguments: TypeError before running anything
        if inspect.iscoroutinefunction(self.fn):
            return await self(**converted)
        result = await asyncio.to_thread(self, **converted)
        return await result if inspect.isawaitable(result) else result

    def _convert(self, name: str, value: Any) -> Any:
        hint = self._hints.get(name)
        if typing.get_origin(hint) is typing.Annotated:
            hint = typing.get_args(hint)[0]
        if typing.get_origin(hint) in (Union, types.UnionType):
            options = [a for a in typing.get_args(hint) if a is not type(None)]
            hint = options[0] if len(options) == 1 else None
        if value is not None and isinstance(hint, type) and issubclass(hint, enum.Enum):
            return hint(value)
        return value


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, interruptible: bool = True
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    interruptible: bool = True,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make ``fn`` a :class:`Tool`: ``@tool`` or ``@tool(name=..., description=..., interruptible=False)``.
    ``interruptible=False``: an interruption of the turn does not cancel it; it runs to completion and its result
    is stored in history (and reaches the model on the next turn)."""

    def make(f: Callable[..., Any]) -> Tool:
        return Tool(f, name=name, description=description, interruptible=interruptible)

    return make(fn) if fn is not None else make


def collect_tools(agent: Any, extra: Iterable[Tool | Callable[..., Any]]) -> dict[str, Tool]:
    """The tools of ``agent``: ``extra`` (Tools or plain functions) and its class's ``@tool`` methods, by name."""
    found: list[Tool] = [t if isinstance(t, Tool) else Tool(t) for t in extra]
    seen: set[str] = set()
    for klass in type(agent).__mro__:
        for attr, value in vars(klass).items():
            if isinstance(value, Tool) and attr not in seen:
                seen.add(attr)
                found.append(getattr(agent, attr))
    tools: dict[str, Tool] = {}
    for t in found:
        if t.name in tools and tools[t.name].fn is not t.fn:
            raise ValueError(f"two tools are named {t.name!r}")
        tools[t.name] = t
    return tools


def format_result(value: Any) -> str:
    """A tool's return value as the text the model reads: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)
