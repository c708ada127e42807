"""voice.llm's tool calling through the real voice server against the local OpenAI-compatible fake: schemas from
typed functions, the text before a call heard first, parallel calls, errors answered to the model, interruptible and
non-interruptible tools, speculative turns, and tool calls in history."""

from __future__ import annotations

import asyncio

from tests.fake_openai import text_reply, tool_call, tool_reply
from tests.llm_common import (
    EVENTS,
    STOCK_SCHEMA,
    WEATHER_SCHEMA,
    connect,
    first_audio_after,
    reply,
    say,
    stored,
    voice_server,
)
from voice.testing import fake_speech_frame

# --- tools ---------------------------------------------------------------------------------------------------------


async def test_a_tool_call_the_text_before_it_is_heard_first_and_the_result_goes_back(tmp_path, fake):
    call = tool_call("get_weather", {"city": "Zürich", "unit": "fahrenheit"}, "call_weather_1")
    fake.queue(
        tool_reply(call, text="Let me check the weather. ", piece=2),
        text_reply("It is 52 degrees in Zürich."),
    )
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "concierge", "t1")
        mark = await say(c, "what's the weather in zurich in fahrenheit")
        text = await reply(c, mark)
        assert text == "Let me check the weather. It is 52 degrees in Zürich."
        first, second = fake.requests
        assert first.body["tools"][:2] == [WEATHER_SCHEMA, STOCK_SCHEMA]
        names = [t["function"]["name"] for t in first.body["tools"]]
        assert sorted(names) == ["book_table", "get_weather", "search_menu", "stock_price"]
        booking = next(t for t in first.body["tools"] if t["function"]["name"] == "book_table")["function"]
        assert booking["parameters"]["properties"]["people"] == {"type": "integer", "description": "how many people come"}
        assert booking["parameters"]["required"] == ["name", "people"]
        # the first sentence reached the listener before the tool finished, and the model got the result after it
        weather_end = next(t for what, _, t in EVENTS if what == "weather end")
        assert first_audio_after(c, mark) < weather_end
        assert first_audio_after(c, mark) < second.received_at
        assert srv.tts.spoken[:2] == ["Let me check the weather.", "It is 52 degrees in Zürich."]
        assert second.messages[-2:] == [
            {"role": "assistant", "content": "Let me check the weather. ", "tool_calls": [
                {"id": "call_weather_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": call["arguments"]}}]},
            {"role": "tool", "tool_call_id": "call_weather_1",
             "content": '{"city": "Zürich", "temperature": 52, "unit": "fahrenheit"}'},
        ]
        await c.close()


async def test_parallel_tool_calls_run_concurrently_are_stored_and_rebuilt_exactly_next_turn(tmp_path, fake):
    calls = [tool_call("get_weather", {"city": "Paris"}, "call_a"), tool_call("stock_price", {"ticker": "AAPL"}, "call_b")]
    fake.queue(
        tool_reply(*calls),
        text_reply("It is 11 degrees in Paris and Apple trades at 227 dollars."),
        text_reply("You're welcome."),
    )
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "concierge", "p1")
        text = await reply(c, await say(c, "weather in paris and the apple share price"))
        assert text == "It is 11 degrees in Paris and Apple trades at 227 dollars."
        starts = {detail: t for what, detail, t in EVENTS if what.endswith("start")}
        ends = {detail: t for what, detail, t in EVENTS if what.endswith("end")}
        assert abs(starts["Paris"] - starts["AAPL"]) < 0.2  # both ran at once (0.4 s each)
        assert max(ends.values()) - min(starts.values()) < 0.7
        second = fake.requests[1]
        assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "tool", "tool"]
        assert [m["tool_call_id"] for m in second.messages[3:]] == ["call_a", "call_b"]
        assert second.messages[2]["content"] is None
        msgs = await stored(srv, "concierge", "p1", lambda ms: len(ms) == 4)
        assert [m["role"] for m in msgs] == ["user", "tool", "tool", "assistant"]
        weather = msgs[1]
        assert weather["content"] == 'get_weather(city="Paris") → {"city": "Paris", "temperature": 11, "unit": "celsius"}'
        assert weather["meta"]["name"] == "get_weather" and weather["meta"]["tool_call_id"] == "call_a"
        assert weather["meta"]["arguments"] == '{"city": "Paris"}' and not weather["meta"]["error"]
        await reply(c, await say(c, "thanks"))
        third = fake.requests[2]
        assert third.messages[:5] == second.messages  # the exact sequence the model saw, rebuilt from history
        assert third.messages[5:] == [
            {"role": "assistant", "content": "It is 11 degrees in Paris and Apple trades at 227 dollars."},
            {"role": "user", "content": "thanks"},
        ]
        await c.close()


async def test_calls_sent_whole_at_index_zero_are_still_two_calls(tmp_path, fake):
    calls = [tool_call("get_weather", {"city": "Oslo"}, "call_x"), tool_call("get_weather", {"city": "Rome"}, "call_y")]
    fake.queue(tool_reply(*calls, whole=True), text_reply("Oslo is colder than Rome."))
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "concierge", "o1")
        assert await reply(c, await say(c, "compare oslo and rome")) == "Oslo is colder than Rome."
        tool_messages = [m for m in fake.requests[1].messages if m["role"] == "tool"]
        assert [m["tool_call_id"] for m in tool_messages] == ["call_x", "call_y"]
        assert '"Oslo"' in tool_messages[0]["content"] and '"Rome"' in tool_messages[1]["content"]
        await c.close()


async def test_unknown_tools_and_bad_arguments_are_answered_to_the_model_as_errors(tmp_path, fake):
    calls = [
        tool_call("teleport", {"to": "Mars"}, "call_1"),
        tool_call("get_weather", '{"city": "Par', "call_2"),
        tool_call("stock_price", {"symbol": "AAPL"}, "call_3"),
        tool_call("get_weather", {"city": "Paris", "unit": "kelvin"}, "call_4"),
    ]
    fake.queue(tool_reply(*calls), text_reply("Sorry, I could not look that up."))
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "concierge", "e1")
        assert await reply(c, await say(c, "do impossible things")) == "Sorry, I could not look that up."
        results = {m["tool_call_id"]: m["content"] for m in fake.requests[1].messages if m["role"] == "tool"}
        assert results["call_1"].startswith("Error: there is no tool named 'teleport'")
        assert results["call_2"].startswith("Error: the arguments are not valid JSON")
        assert results["call_3"].startswith("Error: TypeError") and "ticker" in results["call_3"]
        assert results["call_4"].startswith("Error: ValueError") and "kelvin" in results["call_4"]
        assert "weather start" not in [what for what, *_ in EVENTS]  # nothing ran on bad input
        assert c.count("error") == 0
        msgs = await stored(srv, "concierge", "e1", lambda ms: len(ms) == 6)
        assert all(m["meta"]["error"] for m in msgs if m["role"] == "tool")
        await c.close()


async def test_a_non_interruptible_tool_finishes_and_is_recorded_when_the_user_interrupts(tmp_path, fake):
    calls = [tool_call("book_table", {"name": "Ada", "people": 4}, "call_book"),
             tool_call("search_menu", {"query": "soup"}, "call_menu")]
    fake.queue(
        tool_reply(*calls, text="One moment, I'm booking it now. "),
        text_reply("Your table for four is booked. What else?"),
    )
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "concierge", "b1")
        await say(c, "book a table for four under ada and find soup")
        await c.wait_audio(timeout=5)  # "One moment, I'm booking it now." is playing; the tools start meanwhile
        for _ in range(100):
            if len(EVENTS) >= 2:
                break
            await asyncio.sleep(0.02)
        assert [what for what, *_ in EVENTS] == ["booking start", "search start"]
        barge = c.mark()
        await c.send(fake_speech_frame("start"))
        await c.wait_for("playback_interrupt", after=barge)
        msgs = await stored(srv, "concierge", "b1", lambda ms: any(m["role"] == "tool" for m in ms), timeout=3)
        tool_msgs = [m for m in msgs if m["role"] == "tool"]
        assert [m["meta"]["name"] for m in tool_msgs] == ["book_table"]
        assert tool_msgs[0]["meta"]["result"] == "Booked a table for 4 under Ada."
        await asyncio.sleep(2.2)
        assert "search end" not in [what for what, *_ in EVENTS]  # the interruptible one was cancelled
        assert len(fake.requests) == 1  # the interrupted turn did not go on to ask the model
        mark = await say(c, "is it done")
        assert await reply(c, mark) == "Your table for four is booked. What else?"
        sent = fake.requests[1].messages
        assert sent[-3:] == [
            {"role": "assistant", "content": "One moment, I'm booking it now. ", "tool_calls": [
                {"id": "call_book", "type": "function",
                 "function": {"name": "book_table", "arguments": '{"name": "Ada", "people": 4}'}}]},
            {"role": "tool", "tool_call_id": "call_book", "content": "Booked a table for 4 under Ada."},
            {"role": "user", "content": "is it done"},
        ]
        await c.close()


async def test_the_next_turn_waits_for_a_tool_that_outlived_an_interruption(tmp_path, fake):
    fake.queue(
        tool_reply(tool_call("book_table", {"name": "Bo", "people": 2}, "call_b2"), text="Booking. "),
        text_reply("Done, you are booked."),
    )
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "concierge", "b2")
        await say(c, "book for two under bo")
        await c.wait_audio(timeout=5)
        await c.send(fake_speech_frame("start"))
        mark = await say(c, "did it work")  # at once: the booking is still running
        assert await reply(c, mark) == "Done, you are booked."
        booking_end = next(t for what, _, t in EVENTS if what == "booking end")
        assert fake.requests[1].received_at >= booking_end
        assert {"role": "tool", "tool_call_id": "call_b2", "content": "Booked a table for 2 under Bo."} in (
            fake.requests[1].messages
        )
        await c.close()


async def test_a_speculative_turn_runs_its_tools_only_once_it_is_committed(tmp_path, fake):
    fake.queue(
        tool_reply(tool_call("book_table", {"name": "Cy", "people": 2}, "call_s1")),  # abandoned: the user goes on
        tool_reply(tool_call("book_table", {"name": "Cy", "people": 3}, "call_s2")),  # committed
        text_reply("Booked for three."),
    )
    async with voice_server(tmp_path, fake) as srv:
        c = await connect(srv, "concierge", "s1")
        await c.send(fake_speech_frame("start"))
        await c.send(fake_speech_frame("eager", "book a table for two under cy"))  # an eager end of turn (Flux)
        await fake.wait_requests(1)
        await asyncio.sleep(0.4)
        assert EVENTS == []  # the model asked for the booking, but the turn is not certain yet
        await c.send(fake_speech_frame("resumed"))
        await c.send(fake_speech_frame("eager", "book a table for two under cy no three"))
        await fake.wait_requests(2)
        await asyncio.sleep(0.4)
        assert EVENTS == []
        mark = c.mark()
        await c.send(fake_speech_frame("final", "book a table for two under cy no three"))
        assert await reply(c, mark) == "Booked for three."
        assert [(what, who) for what, who, _ in EVENTS] == [("booking start", "Cy"), ("booking end", "Cy")]
        msgs = await stored(srv, "concierge", "s1", lambda ms: len(ms) == 3)
        assert [m["role"] for m in msgs] == ["user", "tool", "assistant"]
        assert msgs[1]["meta"]["tool_call_id"] == "call_s2"
        await c.close()
