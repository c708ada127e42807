"""`<voice-agent show-metrics>` (the demo page) in real Chromium against `voice serve` on the real offline models: a
spoken question (fake microphone playing Piper speech) gets a reply whose bubble carries a latency waterfall with
plausible, ordered numbers, the same as the turn's `metrics` message, and a text alternative."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.browser import ServeProcess, chromium, write_wav
from tests.speech import piper_speech, silence

pytestmark = pytest.mark.asyncio

QUESTION = "what is the weather like in paris today"
WATERFALL = "voice-agent li.assistant figure.waterfall"

READ = """(sel) => {
  const el = document.querySelector("voice-agent");
  const bubbles = [...el.shadowRoot.querySelectorAll("li.assistant")];
  return {
    metrics: el.client.metrics,
    bubbles: bubbles.map((li) => ({
      text: li.querySelector(".text").textContent,
      label: li.querySelector("figure.waterfall")?.getAttribute("aria-label") ?? null,
      rows: [...li.querySelectorAll("figure.waterfall li")].map((r) => ({
        key: r.dataset.key, ms: Number(r.dataset.ms), shown: r.querySelector(".ms").textContent,
        left: parseFloat(r.querySelector(".bar").style.left), width: parseFloat(r.querySelector(".bar").style.width),
      })),
    })),
  };
}"""


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


async def test_a_voice_turn_draws_an_ordered_waterfall_with_the_turns_numbers(serve, question_wav):
    async with chromium(question_wav) as page:
        await page.set_viewport_size({"width": 720, "height": 900})
        await page.goto(f"{serve.url}/?instance=chrome-metrics")
        await page.wait_for_function("document.querySelector('voice-agent')?.client?.connection === 'open'")
        assert await page.evaluate("document.querySelector('voice-agent').hasAttribute('show-metrics')")
        await page.click("voice-agent button.call")
        await page.locator(WATERFALL).first.wait_for(timeout=45_000)
        shot = serve.db.parent / "widget-metrics.png"
        await page.locator("voice-agent").screenshot(path=str(shot))

        state = await page.evaluate(READ, WATERFALL)
        greeting, *answers = state["bubbles"]
        assert greeting["label"] is None, "the greeting is not a measured turn: no waterfall"
        answer = next(b for b in answers if b["rows"])
        assert "said" in answer["text"].lower() and "weather" in answer["text"].lower(), answer["text"]

        rows = answer["rows"]
        assert [r["key"] for r in rows] == ["stt_ms", "first_text_from_speech_ms", "voice_to_voice_ms"]
        stt, text, audio = (r["ms"] for r in rows)
        # ordered, except that the reply may start (held) on the early transcript, before the final one
        assert 0 < stt <= audio and 0 < text <= audio, rows
        assert stt < 5000 and audio < 10_000, rows  # plausible for Whisper tiny + Piper on this machine
        for r in rows:
            assert r["shown"] == f"{r['ms']} ms"
        m = state["metrics"]
        assert (round(m["stt_ms"]), round(m["first_text_from_speech_ms"]), round(m["voice_to_voice_ms"])) == (
            stt, text, audio), "the waterfall shows the turn's metrics message"
        # bars: each starts where the previous mark ended, the last one reaches the end of the axis
        assert rows[0]["left"] == 0
        assert abs(rows[1]["left"] - 100 * min(stt, text) / audio) < 0.01
        assert abs(rows[2]["left"] + rows[2]["width"] - 100) < 0.01
        assert answer["label"] == (
            f"Latency from end of speech: Transcript {stt} ms, First text {text} ms, First audio {audio} ms")
        assert page.console_errors == []

        # switching the attribute off removes the waterfalls without reconnecting
        client_before = await page.evaluate("document.querySelector('voice-agent').client.url")
        await page.evaluate("document.querySelector('voice-agent').removeAttribute('show-metrics')")
        deadline = time.monotonic() + 5
        while await page.locator(WATERFALL).count() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await page.locator(WATERFALL).count() == 0
        assert await page.evaluate("document.querySelector('voice-agent').client.connection") == "open"
        assert await page.evaluate("document.querySelector('voice-agent').client.url") == client_before
