"""App messages both ways in real Chromium, with Cloudflare's official client (``@cloudflare/voice``, bundled from npm
at test time) and with ours: the page's ``sendJSON`` reaches the agent's ``on_message``, and the agent's
``call.send_json`` reaches the page as a ``custommessage`` event and ``lastCustomMessage``. A real server on loopback
(fake STT/TTS: no audio is involved)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import chromium
from tests.harness import LiveServer
from tests.js_pages import esbuild, pages_app
from voice import TurnContext, VoiceAgent
from voice import Call
from voice.testing import FakeTranscriber, FakeTTS

pytestmark = pytest.mark.asyncio

RECEIVED: list[tuple[str, dict[str, Any]]] = []


class Planner(VoiceAgent):
    """Answers app messages: a ``set_topic`` is confirmed with ``topic_set``, anything else with ``unhandled``."""

    async def on_turn(self, transcript: str, ctx: TurnContext) -> str:
        return f"You said: {transcript}"

    async def on_message(self, message: dict[str, Any], call: Call) -> None:
        RECEIVED.append((self.instance_id, message))
        if message.get("type") == "set_topic":
            call.send_json({"type": "topic_set", "topic": message.get("topic"), "instance": self.instance_id})
        else:
            call.send_json({"type": "unhandled", "what": message.get("type")})


class Plain(VoiceAgent):
    """Does not override ``on_message``: app messages are refused with ``unknown_type``."""

    async def on_turn(self, transcript: str, ctx: TurnContext) -> str:
        return transcript


OFFICIAL_PAGE = """<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><title>official client</title>
<script type="module">
  import { VoiceClient } from "/bundle/cloudflare-voice.js";
  const params = new URLSearchParams(location.search);
  const client = new VoiceClient({ agent: params.get("agent"), name: params.get("instance"), host: location.host });
  window.__log = { custom: [], errors: [], connected: false };
  client.addEventListener("custommessage", (msg) => window.__log.custom.push(msg));
  client.addEventListener("error", (err) => err && window.__log.errors.push(err));
  client.addEventListener("connectionchange", (connected) => { window.__log.connected = connected; });
  client.connect();
  window.__client = client;
</script>"""

OURS_PAGE = """<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><title>our client</title>
<script type="module">
  import { VoiceClient } from "/client/voice-client.js";
  const params = new URLSearchParams(location.search);
  const client = new VoiceClient({ agent: params.get("agent"), instance: params.get("instance") });
  window.__log = { custom: [], errors: [], connected: false };
  client.addEventListener("custommessage", (e) => window.__log.custom.push(e.detail.message));
  client.addEventListener("error", (e) => e.detail.error && window.__log.errors.push(e.detail.error));
  client.addEventListener("connectionchange", (e) => { window.__log.connected = e.detail.connected; });
  client.connect();
  window.__client = client;
</script>"""


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    esbuild('export { VoiceClient } from "@cloudflare/voice/client";\n', out / "cloudflare-voice.js")
    (out / "official.html").write_text(OFFICIAL_PAGE)
    (out / "ours.html").write_text(OURS_PAGE)
    return out


@pytest.fixture
async def server(bundle_dir, tmp_path):
    app = pages_app(
        {"Planner": Planner, "plain": Plain}, bundle_dir,
        transcriber=FakeTranscriber(), tts=FakeTTS(), db_path=str(tmp_path / "voice.db"), webrtc=False,
    )
    async with LiveServer(app) as live:
        yield live


async def _open(page, server: LiveServer, which: str, agent: str, instance: str) -> None:
    await page.goto(f"{server.http}/bundle/{which}.html?agent={agent}&instance={instance}")
    await page.wait_for_function("window.__log?.connected === true", timeout=10_000)


@pytest.mark.parametrize("which", ["official", "ours"])
async def test_send_json_reaches_on_message_and_send_json_reaches_the_page(server, which):
    RECEIVED.clear()
    instance = f"{which}-room"
    async with chromium() as page:
        # The official client kebab-cases the agent name into the URL (Planner → planner), as ours does.
        await _open(page, server, which, "Planner", instance)
        sent = await page.evaluate("window.__client.sendJSON({type: 'set_topic', topic: 'weather', n: 3})")
        assert sent in (None, True)  # the official client returns nothing, ours whether it was sent
        await page.wait_for_function("window.__log.custom.length >= 1", timeout=10_000)
        assert RECEIVED == [(instance, {"type": "set_topic", "topic": "weather", "n": 3})]
        expected = {"type": "topic_set", "topic": "weather", "instance": instance}
        assert await page.evaluate("window.__log.custom") == [expected]
        assert await page.evaluate("window.__client.lastCustomMessage") == expected

        await page.evaluate("window.__client.sendJSON({type: 'ping'})")
        await page.wait_for_function("window.__log.custom.length >= 2", timeout=10_000)
        assert await page.evaluate("window.__client.lastCustomMessage") == {"type": "unhandled", "what": "ping"}
        assert [m for _, m in RECEIVED] == [{"type": "set_topic", "topic": "weather", "n": 3}, {"type": "ping"}]
        # protocol messages are not surfaced as custom ones, and nothing went wrong
        assert all(m["type"] in ("topic_set", "unhandled") for m in await page.evaluate("window.__log.custom"))
        assert await page.evaluate("window.__log.errors") == []
        assert page.console_errors == []


@pytest.mark.parametrize("which", ["official", "ours"])
async def test_an_agent_without_on_message_refuses_app_messages_visibly(server, which):
    async with chromium() as page:
        await _open(page, server, which, "plain", f"{which}-plain")
        await page.evaluate("window.__client.sendJSON({type: 'set_topic', topic: 'weather'})")
        await page.wait_for_function("window.__log.errors.length >= 1", timeout=10_000)
        errors = await page.evaluate("window.__log.errors")
        assert "unknown message type" in errors[0] and "set_topic" in errors[0], errors
        assert await page.evaluate("window.__client.lastCustomMessage") is None
