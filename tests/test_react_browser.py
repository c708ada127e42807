"""``web_client/react.js`` mounted with real React 19 and react-dom (from npm, bundled with the shipped hooks module by
esbuild at test time) in real Chromium, inside ``<StrictMode>`` (effects run twice, as in development), against a
real server on loopback: the demo agents with the real Whisper (the fake microphone plays Piper speech) and a fake
TTS. What is checked is the rendered DOM, as a user would see it."""

from __future__ import annotations

import httpx
import pytest

from tests.browser import chromium, write_wav
from tests.harness import LiveServer
from tests.js_pages import esbuild, pages_app
from tests.speech import piper_speech, silence, wer
from voice import Call
from voice.demo import DEMO_AGENTS, EchoAssistant
from voice.local import WhisperTranscriber
from voice.testing import FakeTTS

pytestmark = pytest.mark.asyncio

SPOKEN = "remember to buy milk and bread"


class Assistant(EchoAssistant):
    """The demo's echo assistant, answering app messages too."""

    async def on_message(self, message: dict, call: Call) -> None:
        call.send_json({"type": "topic_set", "topic": message.get("topic")})

APP = """
import { StrictMode, createElement as h, useState } from "react";
import { createRoot } from "react-dom/client";
import { useVoiceAgent, useVoiceInput } from "../../web_client/react.js";

const instance = new URLSearchParams(location.search).get("instance");

function Agent() {
  // `name`, as Cloudflare's hook calls the instance
  const { connection, status, inCall, transcript, sendText, startCall, endCall, error, client, sendJSON,
    lastCustomMessage } = useVoiceAgent({ agent: "assistant", name: instance });
  const [text, setText] = useState("");
  window.__agentClient = client;
  const submit = (event) => {
    event.preventDefault();
    if (sendText(text)) setText("");
  };
  return h("section", { id: "agent" },
    h("p", { id: "connection" }, connection),
    h("p", { id: "status" }, status),
    h("p", { id: "in-call" }, inCall ? "in call" : "not in call"),
    h("form", { onSubmit: submit },
      h("input", { id: "text", value: text, onChange: (e) => setText(e.target.value) }),
      h("button", { type: "submit" }, "Send")),
    h("button", { id: "call", onClick: () => (inCall ? endCall() : startCall()) }, inCall ? "End call" : "Start call"),
    h("ol", { id: "transcript" }, transcript.map((m) => h("li", { key: m.id, className: m.role }, m.text))),
    h("button", { id: "topic", onClick: () => sendJSON({ type: "set_topic", topic: "weather" }) }, "Topic"),
    h("p", { id: "custom" }, lastCustomMessage ? `${lastCustomMessage.type}: ${lastCustomMessage.topic}` : ""),
    error ? h("p", { id: "error" }, error) : null);
}

function Dictation() {
  const { transcript, interimTranscript, isListening, connected, start, stop, clear } =
    useVoiceInput({ agent: "dictation", instance });
  return h("section", { id: "dictation" },
    h("p", { id: "d-connected" }, connected ? "connected" : "offline"),
    h("button", { id: "dictate", onClick: () => (isListening ? stop() : start()) }, isListening ? "Stop" : "Dictate"),
    h("button", { id: "clear", onClick: clear }, "Clear"),
    h("p", { id: "dictated" }, transcript),
    h("p", { id: "partial" }, interimTranscript ?? ""));
}

createRoot(document.getElementById("root")).render(h(StrictMode, null, h(Agent), h(Dictation)));
"""

PAGE = """<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><title>React hooks</title>
<div id="root"></div><script type="module" src="/bundle/react-app.js"></script>"""


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    (out / "react.html").write_text(PAGE)
    esbuild(APP, out / "react-app.js")
    return out


@pytest.fixture(scope="module")
def dictation_wav(tmp_path_factory):
    pcm = silence(800) + piper_speech(SPOKEN) + silence(10_000)
    return write_wav(tmp_path_factory.mktemp("wav") / "dictate.wav", pcm)


@pytest.fixture
async def server(bundle_dir, tmp_path):
    app = pages_app(
        {**DEMO_AGENTS, "assistant": Assistant}, bundle_dir,
        transcriber=WhisperTranscriber(), tts=FakeTTS(seconds_per_char=0.005), db_path=str(tmp_path / "voice.db"),
        webrtc=False,
    )
    async with LiveServer(app) as live:
        yield live


async def _text(page, selector: str) -> str:
    return await page.locator(selector).inner_text()


async def test_use_voice_agent_renders_connection_status_and_the_conversation(server, dictation_wav):
    async with chromium(dictation_wav) as page:
        await page.goto(f"{server.http}/bundle/react.html?instance=react-agent")
        await page.locator("#connection", has_text="open").wait_for(timeout=10_000)
        assert await _text(page, "#status") == "idle"
        assert await _text(page, "#in-call") == "not in call"
        assert await page.locator("#transcript li").count() == 0

        await page.fill("#text", "typed in react")
        await page.press("#text", "Enter")
        reply = page.locator("#transcript li.assistant", has_text="You said: typed in react")
        await reply.wait_for(timeout=10_000)
        assert await page.locator("#transcript li.user").all_inner_texts() == ["typed in react"]
        assert await page.input_value("#text") == "", "the box is cleared once sent"
        async with httpx.AsyncClient() as http:  # the server runs in this event loop
            stored = (await http.get(f"{server.http}/agents/assistant/react-agent/messages")).json()["messages"]
        assert [m["content"] for m in stored] == ["typed in react", "You said: typed in react"]

        assert await _text(page, "#custom") == ""
        await page.click("#topic")  # sendJSON → on_message → call.send_json → lastCustomMessage
        await page.locator("#custom", has_text="topic_set: weather").wait_for(timeout=10_000)

        await page.click("#call")
        await page.locator("#status", has_text="listening").wait_for(timeout=15_000)
        assert await _text(page, "#in-call") == "in call"
        assert await _text(page, "#call") == "End call"
        await page.click("#call")
        await page.locator("#in-call", has_text="not in call").wait_for(timeout=5_000)
        assert await _text(page, "#status") == "idle"
        assert await page.locator("#error").count() == 0
        assert page.console_errors == []
        # StrictMode mounted, unmounted and remounted the hook: only the live client is left connected.
        live = await page.evaluate("window.__voiceStats().map((s) => s.agent)")
        assert sorted(live) == ["assistant", "dictation"], live


async def test_use_voice_input_shows_the_dictated_transcript(server, dictation_wav):
    async with chromium(dictation_wav) as page:
        await page.goto(f"{server.http}/bundle/react.html?instance=react-dictation")
        await page.locator("#d-connected", has_text="connected").wait_for(timeout=10_000)
        assert await _text(page, "#dictated") == ""
        await page.click("#dictate")
        await page.locator("#dictate", has_text="Stop").wait_for(timeout=5_000)
        await page.locator("#dictated", has_text="milk").wait_for(timeout=30_000)
        dictated = await _text(page, "#dictated")
        assert wer(SPOKEN, dictated) <= 0.25, dictated
        await page.click("#dictate")
        await page.locator("#dictate", has_text="Dictate").wait_for(timeout=5_000)
        await page.click("#clear")
        await page.locator("#dictated", has_text="milk").wait_for(state="detached", timeout=5_000)
        assert page.console_errors == []
