"""Deepgram providers (Nova-3, Flux, Aura) against the local protocol-faithful fake in ``fake_deepgram.py``.

No key and no network: every test points the providers at ``FakeDeepgram().url``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import time
from types import SimpleNamespace

import pytest
from fake_deepgram import FakeDeepgram, silence, speech, tts_audio

from voice.providers.base import (
    EagerFinal,
    Final,
    Interim,
    SpeechStarted,
    TranscriberError,
    TranscriberOptions,
    TurnResumed,
)
from voice.providers.deepgram import (
    AuraTTS,
    DeepgramAuthError,
    FluxTranscriber,
    NovaTranscriber,
    StreamSettings,
)
from voice.providers.deepgram._common import ClientHolder, DeepgramConfig
from voice.providers.deepgram.streaming import ReplayBuffer, _Conn
from voice.providers.deepgram.flux import FluxSession
from voice.providers.deepgram.nova import NovaSession

KEY = "test-key"
FAST = dict(backoff_base=0.02, backoff_cap=0.1, close_timeout=1.0, connect_timeout=2.0)


def async_test(fn):
    """Run an async test body with a hard timeout (a hang fails the test instead of the suite)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        async def guarded():
            return await asyncio.wait_for(fn(*args, **kwargs), 15)

        return asyncio.run(guarded())

    return wrapper


class Recorder:
    """Collects transcriber events; ``wait_for`` polls until a predicate over them holds."""

    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, event) -> None:
        self.events.append(event)

    def of(self, kind) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, predicate, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; events: {self.events}")
            await asyncio.sleep(0.01)

    def finals(self) -> list[str]:
        return [e.text for e in self.of(Final)]


async def feed_realtime(session, pcm: bytes, frame_ms: int = 20, pause: float = 0.002) -> None:
    """Feed in 20 ms frames with a small pause, like a live call but faster than real time."""
    step = 16000 * 2 * frame_ms // 1000
    for i in range(0, len(pcm), step):
        session.feed(pcm[i : i + step])
        await asyncio.sleep(pause)


# --- wire: query parameters and headers ----------------------------------------------------------------------


@async_test
async def test_nova_query_params_and_auth_header():
    async with FakeDeepgram() as fake:
        stt = NovaTranscriber(api_key=KEY, base_url=fake.url + "/", keyterm=["Acme", "order number"], endpointing=250)
        rec = Recorder()
        session = await stt.create_session(TranscriberOptions(on_event=rec, language="en-US"))
        await session.wait_until_ready()
        await session.close()
        conn = fake.conns_on("/v1/listen")[0]
        assert conn.headers["Authorization"] == f"Token {KEY}"
        assert conn.headers["User-Agent"].startswith("deepgram-sdk/7.")
        assert conn.query == {
            "model": ["nova-3"],
            "encoding": ["linear16"],
            "sample_rate": ["16000"],
            "channels": ["1"],
            "interim_results": ["true"],
            "endpointing": ["250"],
            "utterance_end_ms": ["1000"],
            "vad_events": ["true"],
            "smart_format": ["true"],
            "punctuate": ["true"],
            "language": ["en-US"],
            "keyterm": ["Acme", "order number"],
        }
        assert not rec.of(TranscriberError)


@async_test
async def test_flux_query_params_and_auth_header():
    async with FakeDeepgram() as fake:
        stt = FluxTranscriber(
            api_key=KEY,
            base_url=fake.url,
            eot_threshold=0.8,
            eager_eot_threshold=0.5,
            eot_timeout_ms=3000,
            keyterm=["Acme"],
        )
        session = await stt.create_session(TranscriberOptions(on_event=Recorder()))
        await session.wait_until_ready()
        await session.close()
        conn = fake.conns_on("/v2/listen")[0]
        assert conn.headers["Authorization"] == f"Token {KEY}"
        assert conn.query == {
            "model": ["flux-general-en"],
            "encoding": ["linear16"],
            "sample_rate": ["16000"],
            "eot_threshold": ["0.8"],
            "eager_eot_threshold": ["0.5"],
            "eot_timeout_ms": ["3000"],
            "keyterm": ["Acme"],
        }
        assert conn.client_messages == [{"type": "CloseStream"}]


@async_test
async def test_aura_query_params_and_auth_header_ws_and_rest():
    async with FakeDeepgram() as fake:
        tts = AuraTTS(api_key=KEY, base_url=fake.url)
        await tts.synthesize("Hi.", encoding="mulaw", sample_rate=8000)
        conn = fake.conns_on("/v1/speak")[0]
        assert conn.headers["Authorization"] == f"Token {KEY}"
        assert conn.query == {"model": ["aura-2-thalia-en"], "encoding": ["mulaw"], "sample_rate": ["8000"]}
        rest = AuraTTS(api_key=KEY, base_url=fake.url, use_websocket=False)
        await rest.synthesize("Hi.")
        req = fake.rest_requests[0]
        assert req["method"] == "POST" and req["path"] == "/v1/speak"
        assert req["headers"]["authorization"] == f"Token {KEY}"
        assert req["query"] == {
            "model": ["aura-2-thalia-en"],
            "encoding": ["linear16"],
            "sample_rate": ["24000"],
            "container": ["none"],
        }
        assert req["body"] == b'{"text": "Hi."}' or b'"text"' in req["body"]
        await tts.close()
        await rest.close()


@async_test
async def test_env_configuration():
    async with FakeDeepgram() as fake:
        saved = {k: os.environ.get(k) for k in ("DEEPGRAM_API_KEY", "DEEPGRAM_BASE_URL")}
        os.environ["DEEPGRAM_API_KEY"], os.environ["DEEPGRAM_BASE_URL"] = KEY, fake.url
        try:
            rec = Recorder()
            session = await NovaTranscriber().create_session(TranscriberOptions(on_event=rec))
            session.feed(speech("env works") + silence(400))
            await rec.wait_for(lambda r: r.finals())
            await session.close()
            assert rec.finals() == ["env works"]
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_keyless_construction_and_config_repr():
    saved = os.environ.pop("DEEPGRAM_API_KEY", None)
    try:
        NovaTranscriber(), FluxTranscriber(), AuraTTS()  # must not build the SDK client
        assert "secret" not in repr(DeepgramConfig(api_key="secret"))
        assert AuraTTS().supports("mulaw", 8000) and AuraTTS().supports("pcm16", 24000)
        assert not AuraTTS().supports("mulaw", 24000)
    finally:
        if saved is not None:
            os.environ["DEEPGRAM_API_KEY"] = saved


# --- Nova-3 ----------------------------------------------------------------------------------------------------


@async_test
async def test_nova_interim_final_assembly_and_speech_started():
    async with FakeDeepgram() as fake:
        fake.final_every_s = 0.5  # finalize segments mid-utterance (is_final without speech_final)
        rec = Recorder()
        session = await NovaTranscriber(api_key=KEY, base_url=fake.url).create_session(TranscriberOptions(on_event=rec))
        session.feed(speech("one two three four five six") + silence(500) + speech("seven eight") + silence(500))
        await rec.wait_for(lambda r: len(r.finals()) == 2)
        await session.close()
        sent = fake.conns_on("/v1/listen")[0].sent
        segments = [m for m in sent if m["type"] == "Results" and m["is_final"] and not m["speech_final"]]
        assert segments, "the fake should have produced is_final segments before speech_final"
        assert rec.finals() == ["one two three four five six", "seven eight"]
        kinds = [type(e).__name__ for e in rec.events]
        assert kinds[0] == "SpeechStarted" and kinds.count("SpeechStarted") == 2
        interims = [e.text for e in rec.of(Interim)]
        # interims are the accumulated finals plus the current hypothesis: each extends the previous one
        first = interims[: interims.index("one two three four five six") + 1]
        assert all(b.startswith(a) for a, b in itertools.pairwise(first))
        assert not rec.of(TranscriberError)


@async_test
async def test_nova_utterance_end_without_endpointing():
    async with FakeDeepgram() as fake:
        rec = Recorder()
        stt = NovaTranscriber(api_key=KEY, base_url=fake.url, endpointing=False, utterance_end_ms=1000)
        session = await stt.create_session(TranscriberOptions(on_event=rec))
        session.feed(speech("no endpoint here") + silence(1200))
        await rec.wait_for(lambda r: r.finals())
        conn = fake.conns_on("/v1/listen")[0]
        assert conn.param("endpointing") == "false"
        assert not any(m.get("speech_final") for m in conn.sent if m["type"] == "Results")
        assert conn.events("UtteranceEnd")
        assert rec.finals() == ["no endpoint here"]
        await session.close()


def _offline_session(cls, rec, **kw):
    """A session driven by hand-written server messages (no socket)."""
    holder = ClientHolder(DeepgramConfig(api_key=KEY))
    session = cls(holder, TranscriberOptions(on_event=rec), StreamSettings(), kw.pop("query", {}))
    return session, _Conn(SimpleNamespace(), 0, 0, time.monotonic())


def _results(text, *, is_final, speech_final=False, from_finalize=False, start=0.0, duration=1.0):
    return {
        "type": "Results",
        "is_final": is_final,
        "speech_final": speech_final,
        "from_finalize": from_finalize,
        "start": start,
        "duration": duration,
        "channel": {"alternatives": [{"transcript": text, "words": []}]},
    }


@async_test
async def test_nova_state_machine_edge_cases():
    rec = Recorder()
    s, conn = _offline_session(NovaSession, rec)
    s._handle(_results("hello", is_final=False), conn)
    s._handle(_results("hello there", is_final=True), conn)
    s._handle(_results("how", is_final=False, start=1.0), conn)
    s._handle({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": -1}, conn)  # ignored
    assert rec.finals() == []
    s._handle(_results("how are you", is_final=True, start=1.0), conn)
    s._handle(_results("", is_final=True, speech_final=True, start=2.0), conn)
    assert rec.finals() == ["hello there how are you"]
    assert [e.text for e in rec.of(Interim)] == ["hello", "hello there", "hello there how", "hello there how are you"]
    s._handle({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 2.5}, conn)  # nothing pending: no-op
    s._handle(_results("uh", is_final=False, start=3.0), conn)
    s._handle(_results("", is_final=True, speech_final=True, start=3.0), conn)  # empty final clears the interim
    assert rec.of(Interim)[-1].text == "" and len(rec.finals()) == 1
    s._handle(_results("done", is_final=True, from_finalize=True, start=4.0), conn)
    s._handle({"type": "SpeechStarted", "channel": [0, 1], "timestamp": 5.0}, conn)
    assert rec.finals() == ["hello there how are you", "done"] and rec.of(SpeechStarted)


@async_test
async def test_nova_keepalive_keeps_session_alive_and_fake_closes_1011_without_it():
    async with FakeDeepgram() as fake:
        fake.idle_timeout = 0.5
        # without KeepAlive: the fake closes with 1011 (NET-0001) and the session has to reconnect
        rec = Recorder()
        stt = NovaTranscriber(api_key=KEY, base_url=fake.url, keepalive_interval=None, settings=StreamSettings(**FAST))
        session = await stt.create_session(TranscriberOptions(on_event=rec))
        await session.wait_until_ready()
        await rec.wait_for(lambda r: len(fake.conns_on("/v1/listen")) == 2, timeout=3)
        first = fake.conns_on("/v1/listen")[0]
        assert first.close_code == 1011 and first.events("Metadata")
        assert not rec.of(TranscriberError)  # one transparent reconnect is not reported
        await session.close()

        # with KeepAlive every 0.15 s: one connection survives 3x the idle timeout, then still transcribes
        rec = Recorder()
        stt = NovaTranscriber(api_key=KEY, base_url=fake.url, keepalive_interval=0.15)
        session = await stt.create_session(TranscriberOptions(on_event=rec))
        await session.wait_until_ready()
        await asyncio.sleep(1.5)
        conn = fake.conns_on("/v1/listen")[-1]
        assert conn.close_code is None and len(conn.keepalives) >= 5
        assert {"type": "KeepAlive"} in conn.client_messages
        session.feed(speech("still here") + silence(400))
        await rec.wait_for(lambda r: r.finals())
        assert rec.finals() == ["still here"] and not rec.of(TranscriberError)
        await session.close()
        assert fake.conns_on("/v1/listen")[-1] is conn  # no reconnect was needed


@async_test
async def test_nova_finalize_on_commit_and_at_close():
    async with FakeDeepgram() as fake:
        rec = Recorder()
        session = await NovaTranscriber(api_key=KEY, base_url=fake.url).create_session(TranscriberOptions(on_event=rec))
        session.feed(speech("commit this now"))  # no trailing silence: no endpoint
        await session.commit()
        await rec.wait_for(lambda r: r.finals())
        assert rec.finals() == ["commit this now"]
        session.feed(speech("and this at hangup"))
        await session.close()
        conn = fake.conns_on("/v1/listen")[0]
        assert [m["type"] for m in conn.client_messages] == ["Finalize", "Finalize", "CloseStream"]
        assert any(m.get("from_finalize") for m in conn.sent if m["type"] == "Results")
        assert rec.finals() == ["commit this now", "and this at hangup"]
        assert conn.close_code == 1000 and conn.events("Metadata")


# --- reconnection with replay, faults, auth ------------------------------------------------------------------


@pytest.mark.parametrize("action", ["abort", "close1011"])
@async_test
async def test_nova_reconnects_and_replays_mid_utterance(action):
    async with FakeDeepgram() as fake:
        fake.final_every_s = 0.6
        fake.add_fault("/v1/listen", after_audio_s=1.0, action=action)
        rec = Recorder()
        stt = NovaTranscriber(api_key=KEY, base_url=fake.url, settings=StreamSettings(**FAST))
        session = await stt.create_session(TranscriberOptions(on_event=rec))
        await feed_realtime(session, speech("alpha bravo charlie delta echo foxtrot golf") + silence(500))
        await rec.wait_for(lambda r: r.finals())
        assert rec.finals() == ["alpha bravo charlie delta echo foxtrot golf"]
        conns = fake.conns_on("/v1/listen")
        assert len(conns) == 2 and conns[0].close_code in (1006, 1011)
        assert not rec.of(TranscriberError)  # transparent to the caller
        assert len(rec.of(SpeechStarted)) == 1  # the replayed onset is not announced twice
        await session.close()


@async_test
async def test_flux_reconnects_and_replays_the_open_turn():
    async with FakeDeepgram() as fake:
        fake.add_fault("/v2/listen", after_audio_s=0.7, action="abort")
        rec = Recorder()
        stt = FluxTranscriber(
            api_key=KEY, base_url=fake.url, settings=StreamSettings(chunk_ms=80, max_chunk_ms=80, **FAST)
        )
        session = await stt.create_session(TranscriberOptions(on_event=rec))
        await feed_realtime(session, speech("please cancel my subscription today") + silence(800))
        await rec.wait_for(lambda r: r.finals())
        assert rec.finals() == ["please cancel my subscription today"]
        assert len(fake.conns_on("/v2/listen")) == 2 and len(rec.of(SpeechStarted)) == 1
        await session.close()


@async_test
async def test_stalled_server_triggers_reconnect():
    async with FakeDeepgram() as fake:
        fake.add_fault("/v1/listen", after_audio_s=0.3, action="stall")
        rec = Recorder()
        settings = StreamSettings(stall_timeout=0.4, **FAST)
        session = await NovaTranscriber(api_key=KEY, base_url=fake.url, settings=settings).create_session(
            TranscriberOptions(on_event=rec)
        )
        await feed_realtime(session, speech("are you there") + silence(500))
        await rec.wait_for(lambda r: r.finals())
        assert rec.finals() == ["are you there"] and len(fake.conns_on("/v1/listen")) == 2
        await session.close()


@pytest.mark.parametrize("cls", [NovaTranscriber, FluxTranscriber])
@pytest.mark.parametrize("status", [None, 403])
@async_test
async def test_bad_key_is_fatal_without_hanging_or_leaking(cls, status):
    secret = "sk-SECRET-do-not-log"
    handler = _CaptureHandler()
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    try:
        async with FakeDeepgram() as fake:
            fake.reject_status = status
            rec = Recorder()
            session = await cls(api_key=secret, base_url=fake.url).create_session(TranscriberOptions(on_event=rec))
            session.feed(speech("hello"))
            await asyncio.wait_for(session.wait_until_ready(), 3)
            await rec.wait_for(lambda r: r.of(TranscriberError))
            (error,) = rec.of(TranscriberError)
            assert error.fatal and str(status or 401) in error.message and secret not in error.message
            await asyncio.wait_for(session.close(), 2)
            assert len(fake.conns) == 1  # no retry storm
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
    assert secret not in handler.text()


class _CaptureHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record) + repr(record.args))

    def text(self) -> str:
        return "\n".join(self.records)


@async_test
async def test_missing_key_is_a_fatal_error_not_a_crash():
    saved = os.environ.pop("DEEPGRAM_API_KEY", None)
    try:
        rec = Recorder()
        session = await NovaTranscriber(base_url="http://127.0.0.1:9").create_session(TranscriberOptions(on_event=rec))
        await asyncio.wait_for(session.wait_until_ready(), 2)
        assert rec.of(TranscriberError)[0].fatal and "DEEPGRAM_API_KEY" in rec.of(TranscriberError)[0].message
        await session.close()
    finally:
        if saved is not None:
            os.environ["DEEPGRAM_API_KEY"] = saved


@async_test
async def test_unreachable_server_gives_up_with_fatal_error():
    rec = Recorder()
    settings = StreamSettings(max_reconnect_attempts=2, **FAST)
    session = await NovaTranscriber(api_key=KEY, base_url="http://127.0.0.1:9", settings=settings).create_session(
        TranscriberOptions(on_event=rec)
    )
    await asyncio.wait_for(session.wait_until_ready(), 5)
    errors = rec.of(TranscriberError)
    assert [e.fatal for e in errors] == [False, True]  # the outage is reported, then given up on
    await session.close()


@async_test
async def test_slow_handshake_times_out():
    async with FakeDeepgram() as fake:
        fake.handshake_delay_s = 1.0
        rec = Recorder()
        settings = StreamSettings(**{**FAST, "connect_timeout": 0.2}, max_reconnect_attempts=1)
        stt = NovaTranscriber(api_key=KEY, base_url=fake.url, settings=settings)
        session = await stt.create_session(TranscriberOptions(on_event=rec))
        await asyncio.wait_for(session.wait_until_ready(), 3)
        assert rec.of(TranscriberError)[-1].fatal and "timed out" in rec.of(TranscriberError)[-1].message
        await session.close()


def test_replay_buffer_bounds_and_cover():
    buf = ReplayBuffer(bytes_per_second=100, max_seconds=1.0)
    buf.feed(bytes(60), 1.0)
    buf.feed(bytes(60), 1.6)
    assert buf.start == 20 and buf.end == 120 and buf.dropped == 20
    buf.feed(bytes(2), 1.62)  # within the trimming slack
    assert buf.start == 20 and buf.end == 122
    buf.cover(50)
    assert buf.start == 50 and buf.read(0, 10) == bytes(10)
    assert buf.time_at(120) == pytest.approx(1.6) and buf.time_at(60) == pytest.approx(1.0)


# --- Flux ------------------------------------------------------------------------------------------------------


@async_test
async def test_flux_turns_live_eager_resumed_committed():
    async with FakeDeepgram() as fake:
        rec = Recorder()
        stt = FluxTranscriber(api_key=KEY, base_url=fake.url, eager_eot_threshold=0.5)
        session = await stt.create_session(TranscriberOptions(on_event=rec))
        # a 300 ms pause: eager end of turn at 200 ms, then the user goes on → TurnResumed
        session.feed(speech("i want to") + silence(300) + speech("book a table") + silence(800))
        await rec.wait_for(lambda r: r.finals())
        kinds = [type(e).__name__ for e in rec.events if not isinstance(e, Interim)]
        assert kinds == ["SpeechStarted", "EagerFinal", "TurnResumed", "EagerFinal", "Final"]
        assert [e.text for e in rec.of(EagerFinal)] == ["i want to", "i want to book a table"]
        assert rec.finals() == ["i want to book a table"]
        events = [m["event"] for m in fake.conns_on("/v2/listen")[0].events("TurnInfo")]
        assert "Update" in events and events.index("StartOfTurn") < events.index("EndOfTurn")
        await session.close()


@async_test
async def test_flux_without_eager_and_empty_end_of_turn_fallback():
    async with FakeDeepgram() as fake:
        fake.flux_blank_end_of_turn = True
        rec = Recorder()
        session = await FluxTranscriber(api_key=KEY, base_url=fake.url).create_session(TranscriberOptions(on_event=rec))
        session.feed(speech("blank end of turn") + silence(800))
        await rec.wait_for(lambda r: r.finals())
        eot = fake.conns_on("/v2/listen")[0].events("TurnInfo", "EndOfTurn")[0]
        assert eot["transcript"] == ""
        assert rec.finals() == ["blank end of turn"]  # fell back to the last interim
        assert not rec.of(EagerFinal) and not rec.of(TurnResumed)
        await session.close()


@async_test
async def test_flux_commit_forces_end_of_turn_and_close_finalizes_open_turn():
    async with FakeDeepgram() as fake:
        rec = Recorder()
        session = await FluxTranscriber(api_key=KEY, base_url=fake.url).create_session(TranscriberOptions(on_event=rec))
        session.feed(speech("end it now"))  # no trailing silence
        await session.commit()
        await rec.wait_for(lambda r: r.finals())
        assert rec.finals() == ["end it now"]
        conn = fake.conns_on("/v2/listen")[0]
        assert {"type": "ForceEndTurn"} in conn.client_messages
        assert conn.events("TurnInfo", "EndOfTurn")[0]["trigger"] == "manual"
        session.feed(speech("goodbye then"))
        await rec.wait_for(lambda r: r.of(Interim) and r.of(Interim)[-1].text == "goodbye then")
        await session.close()  # CloseStream: Flux emits no EndOfTurn, the last Update becomes the Final
        assert rec.finals() == ["end it now", "goodbye then"]
        assert conn.client_messages[-1] == {"type": "CloseStream"} and conn.close_code == 1005


@async_test
async def test_audio_fed_before_the_socket_opens_is_buffered():
    async with FakeDeepgram() as fake:
        fake.handshake_delay_s = 0.3
        for cls in (NovaTranscriber, FluxTranscriber):
            rec = Recorder()
            session = await cls(api_key=KEY, base_url=fake.url).create_session(TranscriberOptions(on_event=rec))
            session.feed(speech("early words count") + silence(800))  # returns at once, socket not open yet
            assert not rec.events
            await session.wait_until_ready()
            await rec.wait_for(lambda r: r.finals())
            assert rec.finals() == ["early words count"]
            await session.close()


@async_test
async def test_flux_state_machine_provider_events():
    rec = Recorder()
    s, conn = _offline_session(FluxSession, rec)

    def turn(event, text, **kw):
        s._handle(
            {
                "type": "TurnInfo",
                "event": event,
                "transcript": text,
                "turn_index": 0,
                "words": [],
                "audio_window_start": 0.0,
                "audio_window_end": 1.0,
                **kw,
            },
            conn,
        )

    s._handle({"type": "Connected", "request_id": "r", "sequence_id": 0}, conn)
    turn("Update", "")
    assert rec.events == []
    turn("StartOfTurn", "hi")
    turn("Update", "hi I")
    turn("EagerEndOfTurn", "hi I")
    turn("TurnResumed", "hi I need")  # cancels the speculative turn
    turn("EagerEndOfTurn", "hi I need help")
    turn("EndOfTurn", "hi I need help")  # commits it
    assert [type(e).__name__ for e in rec.events] == [
        "SpeechStarted",
        "Interim",
        "Interim",
        "EagerFinal",
        "TurnResumed",
        "Interim",
        "EagerFinal",
        "Final",
    ]
    assert rec.finals() == ["hi I need help"]
    # empty EndOfTurn after an eager one → the eager text; a dropped socket voids a pending eager turn
    turn("StartOfTurn", "second")
    turn("EagerEndOfTurn", "second turn")
    turn("EndOfTurn", "")
    assert rec.finals()[-1] == "second turn"
    turn("StartOfTurn", "third")
    turn("EagerEndOfTurn", "third one")
    s._on_connection_lost()
    assert isinstance(rec.events[-1], TurnResumed)
    turn("StartOfTurn", "third")  # replayed turn: no second SpeechStarted
    assert len(rec.of(SpeechStarted)) == 3
    with pytest.raises(Exception, match="INTERNAL"):
        s._handle({"type": "Error", "code": "INTERNAL_SERVER_ERROR", "description": "boom"}, conn)


# --- Aura ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding,rate,dg", [("pcm16", 24000, "linear16"), ("pcm16", 16000, "linear16"), ("mulaw", 8000, "mulaw")]
)
@async_test
async def test_aura_streams_exact_audio(encoding, rate, dg):
    async with FakeDeepgram() as fake:
        fake.tts_chunk_ms = 33  # odd-sized frames: the provider re-frames to whole samples
        tts = AuraTTS(api_key=KEY, base_url=fake.url)
        text = "Hello there, how can I help you today?"
        chunks = [c async for c in tts.stream(text, encoding=encoding, sample_rate=rate)]
        assert len(chunks) > 3
        assert all(c.encoding == encoding and c.sample_rate == rate for c in chunks)
        if encoding == "pcm16":
            assert all(len(c.data) % 2 == 0 for c in chunks)
        assert b"".join(c.data for c in chunks) == tts_audio(text, dg, rate, fake.tts_ms_per_char)
        conn = fake.conns_on("/v1/speak")[0]
        assert conn.client_messages == [{"type": "Speak", "text": text}, {"type": "Flush"}]
        # a second request reuses the pooled socket
        again = await tts.synthesize("Second.", encoding=encoding, sample_rate=rate)
        assert again.data == tts_audio("Second.", dg, rate, fake.tts_ms_per_char)
        assert len(fake.conns_on("/v1/speak")) == 1
        await tts.close()


@async_test
async def test_aura_cancel_sends_clear_and_drops_audio_until_cleared():
    async with FakeDeepgram() as fake:
        fake.tts_chunk_delay_s = 0.01
        fake.tts_leak_frames_after_clear = 3  # frames in flight between Clear and Cleared
        tts = AuraTTS(api_key=KEY, base_url=fake.url)
        cancel = asyncio.Event()
        got = 0
        async for chunk in tts.stream("This is a long answer that the user interrupts. " * 4, cancel):
            got += len(chunk.data)
            if got > 4000:
                cancel.set()
        full = len(
            tts_audio("This is a long answer that the user interrupts. " * 4, "linear16", 24000, fake.tts_ms_per_char)
        )
        assert 4000 < got < full
        await asyncio.sleep(0.2)  # the socket is reset in the background
        conn = fake.conns_on("/v1/speak")[0]
        assert {"type": "Clear"} in conn.client_messages and conn.events("Cleared")
        # the next request on the same socket gets exactly its own audio: leaked frames were dropped
        after = await tts.synthesize("Next.")
        assert after.data == tts_audio("Next.", "linear16", 24000, fake.tts_ms_per_char)
        assert len(fake.conns_on("/v1/speak")) == 1
        await tts.close()


@pytest.mark.parametrize("action", ["abort", "stall"])
@async_test
async def test_aura_falls_back_to_rest(action):
    async with FakeDeepgram() as fake:
        fake.add_fault("/v1/speak", action=action)
        tts = AuraTTS(api_key=KEY, base_url=fake.url, first_audio_timeout=0.5)
        out = await tts.synthesize("Fallback please.", encoding="mulaw", sample_rate=8000)
        assert out.data == tts_audio("Fallback please.", "mulaw", 8000, fake.tts_ms_per_char)
        (req,) = fake.rest_requests
        assert req["query"]["container"] == ["none"] and req["query"]["encoding"] == ["mulaw"]
        await tts.close()


@async_test
async def test_aura_retries_a_stale_pooled_socket_before_falling_back():
    async with FakeDeepgram() as fake:
        fake.add_fault("/v1/speak", action="abort", after_flushes=1)  # the pooled socket dies on its 2nd use
        tts = AuraTTS(api_key=KEY, base_url=fake.url)
        await tts.synthesize("First.")
        again = await tts.synthesize("Second.")
        assert again.data == tts_audio("Second.", "linear16", 24000, fake.tts_ms_per_char)
        assert len(fake.conns_on("/v1/speak")) == 2 and not fake.rest_requests
        await tts.close()


@async_test
async def test_aura_limits_split_long_text_and_spread_flushes():
    async with FakeDeepgram() as fake:
        fake.tts_ms_per_char = 0.2
        tts = AuraTTS(api_key=KEY, base_url=fake.url)
        long_text = ("word " * 900).strip()  # 4499 characters
        out = await tts.synthesize(long_text)
        speaks = [m for m in fake.conns_on("/v1/speak")[0].client_messages if m["type"] == "Speak"]
        assert len(speaks) == 3 and all(len(m["text"]) <= 2000 for m in speaks)
        assert len(out.data) > 0
        for i in range(20):  # 21 flushes in total: the 21st must go to a fresh socket
            await tts.synthesize(f"Sentence {i}.")
        conns = fake.conns_on("/v1/speak")
        assert len(conns) == 2 and all(c.close_code is None or c.close_code == 1000 for c in conns)
        assert not any(c.events("Warning") for c in conns)
        await tts.close()


@async_test
async def test_aura_bad_key_raises_clear_error():
    secret = "sk-SECRET-tts"
    async with FakeDeepgram() as fake:
        tts = AuraTTS(api_key=secret, base_url=fake.url)
        with pytest.raises(DeepgramAuthError) as info:
            await tts.synthesize("Hello.")
        assert "401" in str(info.value) and secret not in str(info.value)
        rest = AuraTTS(api_key=secret, base_url=fake.url, use_websocket=False)
        with pytest.raises(DeepgramAuthError) as info:
            await rest.synthesize("Hello.")
        assert "401" in str(info.value) and secret not in str(info.value)
