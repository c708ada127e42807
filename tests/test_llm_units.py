"""voice.llm's pure parts: schemas from signatures and docstrings, tool-call assembly from fragments, and the history
→ Chat Completions rebuild (in addition to the end-to-end tests in test_llm.py)."""

from __future__ import annotations

import enum
from types import SimpleNamespace as NS
from typing import Annotated, Literal

import pytest

from voice.agent import FLUSH
from voice.llm import tool
from voice.llm.history import to_chat_messages, tool_record
from voice.llm.schema import function_schema, parse_docstring
from voice.llm.stream import Completion, ToolCall, read_stream


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 2


def order(
    item: str,
    size: Size = Size.SMALL,
    extras: list[str] | None = None,
    mood: Literal["happy", "sad"] | None = None,
    where: tuple[float, float] = (0.0, 0.0),
    notes: dict[str, int] | None = None,
    rush: Annotated[bool, "deliver within the hour"] = False,
    *rest: str,
    **more: int,
) -> str:
    """Order something.

    Parameters
    ----------
    item : str
        what to order,
        by name
    size : Size
        how big
    """
    return item


def test_schema_from_a_numpy_style_function():
    description, schema = function_schema(order)
    assert description == "Order something."
    assert schema == {
        "type": "object",
        "properties": {
            "item": {"type": "string", "description": "what to order, by name"},
            "size": {"type": "integer", "enum": [1, 2], "description": "how big", "default": 1},
            "extras": {"type": ["array", "null"], "items": {"type": "string"}, "default": None},
            "mood": {"type": ["string", "null"], "enum": ["happy", "sad", None], "default": None},
            "where": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}], "minItems": 2,
                      "maxItems": 2, "default": [0.0, 0.0]},
            "notes": {"type": ["object", "null"], "additionalProperties": {"type": "integer"}, "default": None},
            "rush": {"type": "boolean", "description": "deliver within the hour", "default": False},
        },
        "required": ["item"],
    }


def test_docstring_styles():
    google = '''Book it.

    Args:
        name (str): who books
            (first and last name)
        people: how many

    Returns:
        a confirmation
    '''
    assert parse_docstring(google) == ("Book it.", {"name": "who books (first and last name)", "people": "how many"})
    sphinx = """Book it.

    :param name: who books
    :param int people: how many
        at most 8
    :returns: a confirmation
    """
    assert parse_docstring(sphinx) == ("Book it.", {"name": "who books", "people": "how many at most 8"})
    assert parse_docstring(None) == ("", {})


class Thing:
    pass


def test_unsupported_annotations_fail_when_the_tool_is_made():
    def use(thing: Thing) -> None:
        """Use a thing."""

    with pytest.raises(TypeError, match="parameter 'thing'"):
        tool(use)

    class Local:
        pass

    def local(x: Local) -> None:  # with postponed annotations, a local class cannot be resolved later
        """Use it."""

    with pytest.raises(TypeError, match="type hints of"):
        tool(local)
    with pytest.raises(ValueError, match="tool name"):
        tool(name="has spaces")(order)


async def test_tools_convert_enums_and_refuse_arguments_that_do_not_fit():
    seen = []

    @tool
    def pick(size: Annotated[Size, "how big"], count: int = 1, other: Size | None = None) -> str:
        """Pick."""
        seen.append((size, count, other))
        return "ok"

    assert await pick.invoke({"size": 2, "other": 1}) == "ok" and seen == [(Size.LARGE, 1, Size.SMALL)]
    with pytest.raises(TypeError):
        await pick.invoke({"count": 3})
    with pytest.raises(TypeError):
        await pick.invoke({"size": 1, "colour": "red"})
    with pytest.raises(ValueError):
        await pick.invoke({"size": 7})
    assert len(seen) == 1


def chunk(*, content=None, tool_calls=None, finish=None):
    delta = NS(content=content, tool_calls=tool_calls)
    return NS(choices=[NS(index=0, delta=delta, finish_reason=finish)], usage=None)


def frag(index, args="", id=None, name=None):
    return NS(index=index, id=id, function=NS(name=name, arguments=args))


async def collect(chunks):
    async def gen():
        for c in chunks:
            yield c

    completion = Completion()
    return [p async for p in read_stream(gen(), completion)], completion


async def test_fragments_are_assembled_by_index_with_the_first_id_and_name():
    pieces, completion = await collect([
        chunk(content="One moment. "),
        chunk(tool_calls=[frag(0, "", "call_1", "get_weather")]),
        chunk(tool_calls=[frag(0, '{"ci')]),
        chunk(tool_calls=[frag(0, 'ty": "Z\\u00fcr')]),
        chunk(tool_calls=[frag(0, 'ich"}', "call_1", "get_weather")]),  # a server repeating id and name
        chunk(tool_calls=[frag(1, '{"ticker"', "call_2", "stock_price"), frag(1, ': "AAPL"}')]),  # two in one chunk
        chunk(finish="tool_calls"),
        NS(choices=[], usage=NS(total_tokens=9)),
    ])
    assert pieces == ["One moment. ", FLUSH]
    assert completion.finished and completion.usage.total_tokens == 9
    assert completion.tool_calls == [
        ToolCall("call_1", "get_weather", '{"city": "Z\\u00fcrich"}'),
        ToolCall("call_2", "stock_price", '{"ticker": "AAPL"}'),
    ]


async def test_a_new_id_at_the_same_index_is_a_new_call_and_a_stream_without_finish_is_unfinished():
    pieces, completion = await collect([
        chunk(tool_calls=[frag(0, '{"a": 1}', "call_a", "f")]),
        chunk(tool_calls=[frag(0, '{"b": 2}', "call_b", "g")]),
    ])
    assert pieces == []  # no text before the calls: nothing to flush
    assert [c.id for c in completion.tool_calls] == ["call_a", "call_b"]
    assert not completion.finished


def record(call_id, name, arguments, result, *, batch, index=0, text_before=""):
    content, meta = tool_record(ToolCall(call_id, name, arguments), result, error=False, batch=batch, index=index,
                                text_before=text_before)
    return {"role": "tool", "content": content, "meta": meta}


def test_history_rebuild_of_a_turn_with_two_tool_rounds():
    history = [
        {"role": "user", "content": "plan my evening"},
        record("c2", "stock", "{}", "227", batch="c1", index=1, text_before="Checking. "),
        record("c1", "weather", '{"city": "Oslo"}', "cold", batch="c1", index=0, text_before="Checking. "),
        record("c3", "book", "{}", "booked", batch="c3", text_before="Now booking."),
        {"role": "assistant", "content": "Checking. Now booking. All set for tonight."},
        {"role": "tool", "content": "a tool message without meta is left out"},
    ]
    assert history[1]["content"] == "stock() → 227"
    assert history[2]["content"] == 'weather(city="Oslo") → cold'
    assert to_chat_messages(history) == [
        {"role": "user", "content": "plan my evening"},
        {"role": "assistant", "content": "Checking. ", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}},
            {"id": "c2", "type": "function", "function": {"name": "stock", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "cold"},
        {"role": "tool", "tool_call_id": "c2", "content": "227"},
        {"role": "assistant", "content": "Now booking.", "tool_calls": [
            {"id": "c3", "type": "function", "function": {"name": "book", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c3", "content": "booked"},
        {"role": "assistant", "content": "All set for tonight."},
    ]


def test_history_rebuild_after_interruptions():
    # heard only part of the text before the call: no extra assistant message
    cut_short = [
        {"role": "user", "content": "book it"},
        record("c1", "book", "{}", "booked", batch="c1", text_before="I'm booking it now."),
        {"role": "assistant", "content": "I'm booking", "interrupted": True},
    ]
    assert [m["role"] for m in to_chat_messages(cut_short)] == ["user", "assistant", "tool"]
    # a tool that outlived the interruption was stored after what was heard: the heard text is folded in
    late = [
        {"role": "user", "content": "book it"},
        {"role": "assistant", "content": "I'm booking it now.", "interrupted": True},
        record("c1", "book", "{}", "booked", batch="c1", text_before="I'm booking it now."),
        {"role": "user", "content": "thanks"},
    ]
    rebuilt = to_chat_messages(late)
    assert [m["role"] for m in rebuilt] == ["user", "assistant", "tool", "user"]
    assert rebuilt[1]["content"] == "I'm booking it now." and rebuilt[1]["tool_calls"][0]["id"] == "c1"
