"""The widget and the dictation box in real Chromium, with a fake microphone playing Piper speech, against
`voice serve` on the real offline models."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.browser import ServeProcess, chromium, write_wav
from tests.speech import piper_speech, silence, wer

pytestmark = pytest.mark.asyncio

QUESTION = "what is the weather like in paris today"
AGENT = "voice-agent"


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    server = ServeProcess(tmp_path_factory.mktemp("serve") / "voice.db").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory):
    # after the greeting has played: 4 s of silence, the question, then a long pause (the file loops)
    pcm = silence(4000) + piper_speech(QUESTION) + silence(12000)
    return write_wav(tmp_path_factory.mktemp("wav") / "question.wav", pcm)


async def client_state(page, selector: str = AGENT) -> dict:
    return await page.evaluate(
        """(sel) => { const c = document.querySelector(sel).client;
            return { status: c.status, connection: c.connection, transcript: c.transcript.map(m => ({...m})),
                     stats: JSON.parse(JSON.stringify(c.stats)), error: c.error }; }""",
        selector,
    )


async def wait_until(page, predicate, timeout: float = 30.0, selector: str = AGENT) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = await client_state(page, selector)
        if predicate(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last state: {state['status']} {state['transcript']} {state['error']}")
        await asyncio.sleep(0.2)


def users(state: dict) -> list[str]:
    return [m["text"] for m in state["transcript"] if m["role"] == "user"]


def replies(state: dict) -> list[str]:
    return [m["text"] for m in state["transcript"] if m["role"] == "assistant"]


async def open_widget(page, serve: ServeProcess, instance: str) -> None:
    await page.goto(f"{serve.url}/?instance={instance}")
    await page.wait_for_function("document.querySelector('voice-agent')?.client?.connection === 'open'")


async def test_call_in_the_widget_transcribes_answers_and_plays(serve, question_wav):
    async with chromium(question_wav) as page:
        await open_widget(page, serve, "chrome-call")
        await page.click("voice-agent button.call")
        state = await wait_until(page, lambda s: any("said" in r.lower() and "weather" in r.lower() for r in replies(s)))
        heard = [u for u in users(state) if "weather" in u.lower()][0]
        assert wer(QUESTION, heard) <= 0.25, heard
        # the bubbles are on screen, in the aria-live log
        bubbles = await page.locator("voice-agent ol.log li").all_inner_texts()
        assert any("weather" in b.lower() for b in bubbles)
        state = await wait_until(page, lambda s: s["stats"]["playedSamples"] > 16000)  # the worklet really played
        assert state["status"] in ("listening", "speaking", "thinking")
        await page.screenshot(path=str(serve.db.parent / "widget.png"))
        assert page.console_errors == []
        # reload: the conversation comes back from the server's history
        for _ in range(100):
            if any("You said" in m["content"] for m in serve.messages("assistant", "chrome-call")):
                break
            await asyncio.sleep(0.1)
        await page.reload()
        await page.wait_for_function("document.querySelector('voice-agent')?.client?.transcript?.length > 0")
        state = await client_state(page)
        assert any("weather" in u.lower() for u in users(state))
        assert any("You said" in r for r in replies(state))


async def test_barge_in_stops_playback_fast_and_history_keeps_what_was_heard(serve, tmp_path):
    # the user starts talking 1.2 s into the greeting ("Hi! Say something and I will repeat it.")
    wav = write_wav(tmp_path / "barge.wav", silence(1200) + piper_speech("wait a moment please") + silence(15000))
    async with chromium(wav) as page:
        await open_widget(page, serve, "chrome-barge")
        await page.evaluate(
            """() => { window.__t = {loud: null, flush: null, start: performance.now()};
                const el = document.querySelector('voice-agent');
                const hook = (c) => {
                  c.addEventListener('audiolevelchange', (e) => {
                    if (e.detail.level > 0.03 && window.__t.loud === null && c.playing) window.__t.loud = performance.now(); });
                  c.addEventListener('playbackack', (e) => {
                    if (e.detail.reason === 'flush' && window.__t.flush === null) window.__t.flush = performance.now(); });
                };
                hook(el.client); el.addEventListener('voice-client', (e) => hook(e.detail.client)); }"""
        )
        await page.click("voice-agent button.call")
        await page.wait_for_function("window.__t.flush !== null", timeout=20_000)
        t = await page.evaluate("window.__t")
        assert t["loud"] is not None
        assert t["flush"] - t["loud"] <= 500, t  # playback stopped within 500 ms of speech onset
        await wait_until(page, lambda s: any("moment" in u.lower() for u in users(s)))
    for _ in range(50):
        msgs = serve.messages("assistant", "chrome-barge")
        greeting = [m for m in msgs if m["role"] == "assistant"]
        if greeting:
            break
        await asyncio.sleep(0.1)
    first = greeting[0]
    assert first["interrupted"], first
    full = "Hi! Say something and I will repeat it."
    assert first["content"] != full and full.startswith(first["content"].split()[0])


async def test_text_input_out_of_and_in_a_call(serve, question_wav):
    async with chromium(question_wav) as page:
        await open_widget(page, serve, "chrome-text")
        await page.fill("voice-agent input#text", "typed before the call")
        await page.press("voice-agent input#text", "Enter")
        state = await wait_until(page, lambda s: "You said: typed before the call" in replies(s))
        assert state["stats"]["samplesReceived"] == 0  # text only outside a call
        await page.click("voice-agent button.call")
        await wait_until(page, lambda s: s["status"] == "listening" and s["stats"]["samplesReceived"] > 0)
        await page.fill("voice-agent input#text", "typed during the call")
        await page.press("voice-agent input#text", "Enter")
        before = (await client_state(page))["stats"]["samplesReceived"]
        await wait_until(page, lambda s: "You said: typed during the call" in replies(s))
        await wait_until(page, lambda s: s["stats"]["samplesReceived"] > before)  # and spoken
        assert page.console_errors == []


async def test_dictation_box_fills_with_the_spoken_text(serve, tmp_path):
    spoken = "remember to buy milk and bread"
    wav = write_wav(tmp_path / "dictate.wav", silence(800) + piper_speech(spoken) + silence(10000))
    async with chromium(wav) as page:
        await page.goto(f"{serve.url}/?instance=chrome-dictation")
        await page.wait_for_function("document.querySelector('voice-dictation')?.client?.connection === 'open'")
        await page.click("voice-dictation button.toggle")
        await page.wait_for_function(
            "document.querySelector('voice-dictation').value.toLowerCase().includes('milk')", timeout=30_000
        )
        value = await page.evaluate("document.querySelector('voice-dictation').value")
        assert wer(spoken, value.strip().splitlines()[0]) <= 0.25, value
        assert page.console_errors == []


async def test_server_restart_mid_call_reconnects_and_the_call_continues(tmp_path, question_wav):
    server = ServeProcess(tmp_path / "restart.db").start()
    try:
        async with chromium(question_wav) as page:
            await open_widget(page, server, "chrome-restart")
            await page.click("voice-agent button.call")
            await wait_until(page, lambda s: s["status"] == "listening")
            server.stop()
            await wait_until(page, lambda s: s["connection"] != "open", timeout=10)
            server.start()
            state = await wait_until(page, lambda s: s["connection"] == "open" and s["status"] == "listening", 30)
            assert state["stats"]["reconnects"] >= 1
            await wait_until(page, lambda s: any("weather" in u.lower() for u in users(s)), timeout=40)
    finally:
        server.stop()


async def test_microphone_denied_shows_an_error_and_nothing_crashes(serve):
    async with chromium(allow_microphone=False) as page:
        await open_widget(page, serve, "chrome-denied")
        await page.click("voice-agent button.call")
        error = page.locator("voice-agent div.error")
        await error.wait_for(state="visible", timeout=10_000)
        text = (await error.inner_text()).lower()
        assert "microphone" in text
        state = await client_state(page)
        assert state["connection"] == "open"  # still usable for text
        await page.fill("voice-agent input#text", "no mic here")
        await page.press("voice-agent input#text", "Enter")
        await wait_until(page, lambda s: "You said: no mic here" in replies(s))
