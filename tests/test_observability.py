"""What an operator sees: Prometheus ``/metrics`` after real calls over real WebSockets (fake providers), the turn
metrics stored with each reply, OpenTelemetry spans of a call and its turns, and what happens without the extras."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap

import httpx
import pytest
import websockets
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Client, LiveServer
from tests.test_engine import Echo, Talker, history
from tests.test_security import DyingSession, Flood
from voice import create_app
from voice.testing import FakeTranscriber, FakeTTS, fake_speech_frame

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DyingOnce(FakeTranscriber):
    """Its first session dies on a frame starting with ``DIE!`` (the STT provider failing mid-call)."""

    async def create_session(self, options):
        session = DyingSession(options, self.default_text, True)
        session.can_die = not self.sessions
        self.sessions.append(session)
        return session


def make_app(tmp_path, transcriber=None):
    return create_app({"echo": Echo, "talker": Talker}, transcriber=transcriber or FakeTranscriber(),
                      tts=FakeTTS(seconds_per_char=0.02, fail_on="boom"), db_path=str(tmp_path / "m.db"))


async def scrape(srv) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (name, sorted labels) → value."""
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{srv.http}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text) for s in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


WS = {"transport": "websocket"}


async def hear_it_all(client: Client, mark: int) -> None:
    """Wait until the reply's audio has been sent and played (16 kHz, real time): the floor is free again."""
    await client.wait_for("status", status="listening", after=mark)
    sent = sum(len(m) for _, m in client.messages[mark:] if isinstance(m, bytes))
    await asyncio.sleep(sent / 32000 + 0.15)


async def test_metrics_move_as_calls_turn_interrupt_and_fail(tmp_path):
    async with LiveServer(make_app(tmp_path, DyingOnce())) as srv:
        before = await scrape(srv)

        def delta(after, name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        # a voice turn and a typed one
        a = await Client.connect(f"{srv.ws}/agents/echo/ops-a")
        await a.start_call()
        mark = a.mark()
        await a.send(fake_speech_frame("start"))
        await a.send(fake_speech_frame("final", "what time is it"))
        await hear_it_all(a, mark)
        mark = a.mark()
        await a.send({"type": "text_message", "text": "typed hello"})
        await hear_it_all(a, mark)
        during = await scrape(srv)
        assert value(during, "voice_active_calls", agent="echo", **WS) >= 1
        assert value(during, "voice_open_connections", agent="echo", **WS) >= 1

        # a barge-in that was only an acknowledgement (resumed), then a real interruption
        b = await Client.connect(f"{srv.ws}/agents/talker/ops-b")
        await b.start_call()
        await b.send(fake_speech_frame("final", "tell me everything"))
        await b.wait_for("transcript_end")
        await b.wait_audio(16000)
        mark = b.mark()
        await b.send(fake_speech_frame("start"))
        await b.wait_for("playback_pause", after=mark)
        await b.send(fake_speech_frame("final", "okay"))
        await b.wait_for("playback_resume", after=mark)
        mark = b.mark()
        await b.send(fake_speech_frame("start"))
        await b.send(fake_speech_frame("final", "wait, that is not what I asked"))
        await b.wait_for("playback_interrupt", after=mark)

        # the TTS fails on one reply; the STT session dies once and is re-created
        mark = a.mark()
        await a.send(fake_speech_frame("final", "boom goes the dynamite"))
        assert (await a.wait_for("error", after=mark))["code"] == "tts_failed"
        await hear_it_all(a, mark)
        await a.send(b"DIE!" + bytes(636))
        await asyncio.sleep(0.3)
        mark = a.mark()
        await a.send(fake_speech_frame("final", "still there"))
        await a.wait_for("transcript_end", after=mark)

        # a client that does not read (a server with a voice that fills the socket's buffers at once)
        loud = create_app({"flood": Flood}, transcriber=FakeTranscriber(), tts=FakeTTS(seconds_per_char=0.5),
                          db_path=str(tmp_path / "f.db"), max_outbound_messages=50, max_outbound_bytes=2_000_000)
        async with LiveServer(loud) as flood:
            slow = await websockets.connect(f"{flood.ws}/agents/flood/ops-slow", max_queue=1, max_size=None)
            await slow.send(json.dumps({"type": "start_call"}))
            await asyncio.sleep(0.3)
            await slow.send(fake_speech_frame("final", "talk a lot"))
            await asyncio.sleep(2)
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(slow.recv(), 5)

        await asyncio.sleep(0.2)
        after = await scrape(srv)
        assert delta(after, "voice_connections_total", **WS) == 3
        assert delta(after, "voice_turns_total", agent="echo", source="voice", **WS) == 3
        assert delta(after, "voice_turns_total", agent="echo", source="text", **WS) == 1
        assert delta(after, "voice_turns_total", agent="talker", source="voice", **WS) == 2  # the interruption's turn
        assert delta(after, "voice_barge_ins_total", agent="talker", **WS) == 2
        assert delta(after, "voice_barge_ins_resumed_total", agent="talker", **WS) == 1
        assert delta(after, "voice_interruptions_total", agent="talker", **WS) == 1
        assert delta(after, "voice_interruptions_total", agent="echo", **WS) == 0
        assert delta(after, "voice_provider_errors_total", kind="tts", provider="FakeTTS") == 1
        assert delta(after, "voice_provider_errors_total", kind="stt", provider="DyingOnce") == 1
        assert delta(after, "voice_provider_reconnects_total", kind="stt", provider="DyingOnce") == 1
        assert delta(after, "voice_slow_clients_closed_total", **WS) == 1
        # every voice turn that got to speak has its stage latencies; typed turns have none
        echo = {"agent": "echo", **WS}
        for stage in ("voice_to_voice", "stt_final", "first_text", "tts_first_audio"):  # "You said:" always speaks
            assert delta(after, f"voice_{stage}_seconds_count", **echo) == 3, stage
        v2v = delta(after, "voice_voice_to_voice_seconds_sum", **echo)
        assert 0 < v2v < 3 * 0.5  # instant fakes: well under half a second each
        assert delta(after, "voice_voice_to_voice_seconds_bucket", le="0.5", **echo) == 3

        for client in (a, b):
            await client.close()
        await asyncio.sleep(0.3)
        gone = await scrape(srv)
        assert value(gone, "voice_active_calls", agent="echo", **WS) == 0


async def test_stored_replies_carry_their_turn_metrics(tmp_path):
    async with LiveServer(make_app(tmp_path)) as srv:
        c = await Client.connect(f"{srv.ws}/agents/echo/meta")
        await c.start_call()
        await c.send(fake_speech_frame("final", "how are you"))
        sent = await c.wait_for("metrics")
        await hear_it_all(c, 0)
        mark = c.mark()
        await c.send({"type": "text_message", "text": "and typed"})
        await hear_it_all(c, mark)
        t = await Client.connect(f"{srv.ws}/agents/talker/meta")
        await t.start_call()
        await t.send(fake_speech_frame("final", "tell me everything"))
        await t.wait_audio(16000)
        await asyncio.sleep(1.2)  # its first sentence has been heard
        mark = t.mark()
        await t.send(fake_speech_frame("start"))
        await t.send(fake_speech_frame("final", "no, stop, something else entirely"))
        await t.wait_for("playback_interrupt", after=mark)
        await asyncio.sleep(0.3)

        messages = await history(srv, "echo", "meta")
        assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
        assert all(m["meta"] is None for m in messages if m["role"] == "user")
        voice_turn, typed_turn = messages[1]["meta"]["metrics"], messages[3]["meta"]["metrics"]
        assert {k: v for k, v in sent.items() if k != "type"} == voice_turn  # what the client was told
        assert voice_turn["voice_to_voice_ms"] is not None and voice_turn["stt_ms"] is not None
        assert typed_turn["voice_to_voice_ms"] is None and typed_turn["first_text_ms"] is not None
        cut = (await history(srv, "talker", "meta"))[1]
        assert cut["interrupted"] and cut["meta"]["metrics"]["voice_to_voice_ms"] is not None
        await c.close()
        await t.close()


@pytest.fixture(scope="module")
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # voice's tracer (a proxy) follows the global provider from now on
    if trace.get_tracer_provider() is not provider:
        pytest.skip("another tracer provider was set in this process")
    return exporter


async def test_a_call_is_a_span_with_a_child_span_per_turn(tmp_path, spans):
    spans.clear()
    async with LiveServer(make_app(tmp_path)) as srv:
        c = await Client.connect(f"{srv.ws}/agents/echo/traced")
        await c.start_call()
        for text in ("first question", "second question"):
            mark = c.mark()
            await c.send(fake_speech_frame("start"))
            await c.send(fake_speech_frame("final", text))
            await c.wait_for("metrics", after=mark)
            await hear_it_all(c, mark)
        await c.close()
        await asyncio.sleep(0.3)
    finished = spans.get_finished_spans()
    calls = [s for s in finished if s.name == "voice.call"]
    turns = [s for s in finished if s.name == "voice.turn"]
    assert len(calls) == 1 and len(turns) == 2
    call = calls[0]
    assert call.attributes["voice.agent"] == "echo" and call.attributes["voice.transport"] == "websocket"
    assert call.attributes["voice.instance"] == "traced"
    for turn in turns:
        assert turn.parent is not None and turn.parent.span_id == call.context.span_id
        assert turn.context.trace_id == call.context.trace_id
        assert turn.attributes["voice.turn.source"] == "voice" and not turn.attributes["voice.turn.interrupted"]
        assert turn.attributes["voice.turn.voice_to_voice_ms"] >= 0
        events = [e.name for e in turn.events]
        assert events[0] == "speech_ended" and "final" in events and "first_audio_sent" in events
        assert [e.timestamp for e in turn.events] == sorted(e.timestamp for e in turn.events)
        assert call.start_time <= turn.start_time <= turn.end_time <= call.end_time
    assert turns[0].end_time <= turns[1].start_time


def run_without(packages: list[str], code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in which ``packages`` cannot be imported."""
    blocker = "import sys\n" + "".join(f"sys.modules[{p!r}] = None\n" for p in packages)
    return subprocess.run([sys.executable, "-c", blocker + textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT, **(env or {})}, timeout=120)


def test_without_the_extras_metrics_answer_501_and_asking_for_them_stops_start_up(tmp_path):
    # FastAPI itself needs opentelemetry-api, so tracing's own import is what is blocked (and the module reloaded)
    served = run_without(["prometheus_client"], f"""
        import asyncio, importlib, sys, httpx
        from tests.harness import Client, LiveServer
        from tests.test_engine import Echo
        from voice import create_app
        from voice.observability import metrics, tracing
        from voice.testing import FakeTranscriber, FakeTTS, fake_speech_frame
        otel, sys.modules["opentelemetry"] = sys.modules["opentelemetry"], None
        importlib.reload(tracing)
        sys.modules["opentelemetry"] = otel

        async def main():
            app = create_app({{"echo": Echo}}, transcriber=FakeTranscriber(), tts=FakeTTS(),
                             db_path={str(tmp_path / "x.db")!r})
            async with LiveServer(app) as srv:
                c = await Client.connect(f"{{srv.ws}}/agents/echo/plain")
                await c.start_call()
                await c.send(fake_speech_frame("final", "still works"))
                await c.wait_for("metrics")
                await c.close()
                async with httpx.AsyncClient() as http:
                    r = await http.get(f"{{srv.http}}/metrics")
            print(metrics.available(), tracing.available(), r.status_code, r.json()["detail"])

        asyncio.run(main())
    """)
    assert served.returncode == 0, served.stderr
    assert served.stdout.split()[:3] == ["False", "False", "501"]
    assert "pip install 'voice[metrics]'" in served.stdout

    required = run_without(["prometheus_client"], """
        from tests.test_engine import Echo
        from voice import create_app
        from voice.transports.monitoring import MetricsUnavailable
        try:
            create_app({"echo": Echo}, metrics=True, warm_up=False)
        except MetricsUnavailable as exc:
            print("refused:", exc)
    """)
    assert required.stdout.startswith("refused:") and "voice[metrics]" in required.stdout, required.stderr

    cli = run_without(["prometheus_client"], """
        import sys
        from voice.cli import main
        sys.exit(main(["serve", "--port", "1"]))
    """, env={"VOICE_METRICS": "1", "VOICE_DB": str(tmp_path / "cli.db")})
    assert cli.returncode == 2
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and "voice[metrics]" in lines[0], cli.stderr
