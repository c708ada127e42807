"""A function's signature and docstring → the JSON Schema of its parameters, as a model's ``tools`` entry needs it.

Type hints give the types (``str``, ``int``, ``float``, ``bool``, ``list[X]``, ``tuple``, ``dict[str, X]``,
``Literal[...]``, :class:`enum.Enum` subclasses, ``X | None``, ``Annotated[X, "description"]``); defaults make a
parameter optional and are included; the docstring gives the description and each parameter's (Google
``Args:``, Sphinx ``:param x:`` or NumPy ``Parameters`` style).
"""

from __future__ import annotations

import enum
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Union

_SIMPLE: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


def type_schema(tp: Any) -> dict[str, Any]:
    """The JSON Schema of one annotation. Raises TypeError for a type it cannot describe."""
    if tp is inspect.Parameter.empty or tp is Any:
        return {}
    if tp in _SIMPLE:
        return {"type": _SIMPLE[tp]}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_schema([member.value for member in tp])
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        inner = type_schema(args[0])
        notes = [a for a in args[1:] if isinstance(a, str)]
        return inner | ({"description": " ".join(notes)} if notes else {})
    if origin is Literal:
        return _enum_schema(list(args))
    if origin in (Union, types.UnionType):
        return _union_schema(args)
    if tp in (list, set, frozenset, tuple) or origin in (list, set, frozenset, tuple, Sequence):
        schema: dict[str, Any] = {"type": "array"}
        if origin is tuple and args and args[-1] is not Ellipsis:
            schema["prefixItems"] = [type_schema(a) for a in args]
            schema["minItems"] = schema["maxItems"] = len(args)
        elif args:
            schema["items"] = type_schema(args[0])
        return schema
    if tp is dict or origin in (dict, Mapping):
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = type_schema(args[1])
        return schema
    raise TypeError(f"cannot describe {tp!r} as JSON Schema")


def _enum_schema(values: list[Any]) -> dict[str, Any]:
    kinds = {_SIMPLE.get(type(v)) for v in values}
    schema: dict[str, Any] = {"enum": values}
    if len(kinds) == 1 and None not in kinds:
        schema["type"] = kinds.pop()
    return schema


def _union_schema(args: tuple[Any, ...]) -> dict[str, Any]:
    options = [type_schema(a) for a in args]
    plain = [o.get("type") for o in options if set(o) == {"type"} and isinstance(o.get("type"), str)]
    if len(plain) == len(options):  # str | int | None → {"type": ["string", "integer", "null"]}
        return {"type": plain}
    nullable = {"type": "null"} in options
    rest = [o for o in options if o != {"type": "null"}]
    if nullable and len(rest) == 1 and isinstance(rest[0].get("type"), str):
        schema = dict(rest[0], type=[rest[0]["type"], "null"])
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
        return schema
    return {"anyOf": options}


def _json_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from a Google-, Sphinx- or NumPy-style docstring."""
    text = inspect.cleandoc(doc or "")
    if not text:
        return "", {}
    lines = text.splitlines()
    params: dict[str, str] = {}
    body: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if re.fullmatch(r"(Args|Arguments|Parameters|Params)\s*:", stripped):  # Google
            i = _google_section(lines, i + 1, params)
            continue
        if stripped in ("Parameters", "Params") and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
            i = _numpy_section(lines, i + 2, params)  # NumPy
            continue
        sphinx = re.match(r":param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)", stripped)
        if sphinx:
            name, desc = sphinx.groups()
            i += 1
            while i < len(lines) and lines[i].startswith((" ", "\t")) and lines[i].strip():
                desc += " " + lines[i].strip()
                i += 1
            params[name] = desc.strip()
            continue
        if re.fullmatch(r"(Returns?|Raises|Yields|Examples?|Notes?)\s*:?", stripped) or stripped.startswith(":"):
            break  # the description is over
        body.append(stripped)
        i += 1
    description = " ".join(" ".join(body).split())
    return description, params


def _google_section(lines: list[str], i: int, params: dict[str, str]) -> int:
    name: str | None = None
    indent: int | None = None
    while i < len(lines):
        line = lines[i]
        if line.strip() and not line.startswith((" ", "\t")):
            break
        if line.strip():
            here = len(line) - len(line.lstrip())
            indent = here if indent is None else indent
            entry = re.match(r"\s*\**(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)", line)
            if here == indent and entry:
                name = entry.group(1)
                params[name] = entry.group(2).strip()
            elif name is not None:
                params[name] = (params[name] + " " + line.strip()).strip()
        i += 1
    return i


def _numpy_section(lines: list[str], i: int, params: dict[str, str]) -> int:
    name: str | None = None
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if not line.startswith((" ", "\t")):
            if i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
                break  # the next section
            name = line.split(":")[0].strip()
            params[name] = ""
        elif name is not None:
            params[name] = (params[name] + " " + line.strip()).strip()
        i += 1
    return i


def type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s resolved annotations (``Annotated`` kept); a TypeError when one names something undefined."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except NameError as exc:
        raise TypeError(f"cannot resolve the type hints of {fn.__qualname__}: {exc}") from None


def function_schema(fn: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
    """(description, parameters schema) of ``fn``. A method's ``self``/``cls`` and ``*args``/``**kwargs`` are left
    out; parameters without a default are required."""
    description, docs = parse_docstring(fn.__doc__)
    hints = type_hints(fn)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for position, (name, param) in enumerate(inspect.signature(fn).parameters.items()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or (position == 0 and name in ("self", "cls")):
            continue
        try:
            schema = type_schema(hints.get(name, inspect.Parameter.empty))
        except TypeError as exc:
            raise TypeError(f"parameter {name!r} of {fn.__qualname__}: {exc}") from None
        if docs.get(name) and "description" not in schema:
            schema["description"] = docs[name]
        if param.default is inspect.Parameter.empty:
            required.append(name)
        else:
            schema["default"] = _json_default(param.default)
        properties[name] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    return description, parameters
