"""The Twilio adapter: G.711, resampling, signatures, TwiML, and whole phone calls through the Media Stream
simulator against the real app on loopback (fake providers; a tone-driven transcriber)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
import warnings
import xml.etree.ElementTree as ET

import httpx
import numpy as np
import pytest
import websockets
from twilio.request_validator import RequestValidator

from adapters.twilio import maybe_mount_twilio, mount_twilio
from voice.audio import g711
from adapters.twilio.output import TwilioOutput
from adapters.twilio.signature import FormParams, http_url, stream_url, valid_signature
from voice.audio.upsample import Upsampler2x
from tests.harness import LiveServer, free_port
from tests.twilio_call import TwilioAPI
from tests.twilio_sim import ToneTranscriber, TwilioSim, silence, tone
from voice import AudioChunk, TurnContext, VoiceAgent, create_app
from voice.audio import StreamResampler, resample
from voice.testing import FakeTTS

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop
    except ImportError:  # Python ≥ 3.13: the fingerprints below still pin the tables
        audioop = None

TOKEN = "test-auth-token-12345"
EVENTS: list[tuple] = []

TALK = (
    "Alpha bravo charlie delta echo foxtrot. Golf hotel india juliet kilo lima. "
    "Mike november oscar papa quebec romeo. Sierra tango uniform victor whiskey."
)


class Phone(VoiceAgent):
    async def on_turn(self, transcript: str, ctx: TurnContext):
        EVENTS.append(("turn", transcript, ctx.call.query.get("from")))
        return f"You said: {transcript}."

    async def on_dtmf(self, digit: str, call) -> None:
        EVENTS.append(("dtmf", digit))
        if digit == "#":
            await self.speak(call, "Goodbye now.")
            await call.hangup()

    async def on_interrupt(self, call) -> None:
        EVENTS.append(("interrupt", call.id))


class Talker(VoiceAgent):
    async def on_turn(self, transcript: str, ctx: TurnContext):
        return TALK


class MulawTTS(FakeTTS):
    """A TTS that produces μ-law 8 kHz itself (the passthrough path)."""

    formats = (("mulaw", 8000),)

    async def synthesize(self, text, cancel=None, *, encoding="pcm16", sample_rate=None) -> AudioChunk:
        chunk = await super().synthesize(text, cancel, encoding=encoding, sample_rate=sample_rate)
        if encoding == "mulaw":
            return AudioChunk(g711.encode(chunk.data), 8000, "mulaw")
        return chunk


class PassthroughPhone(Phone):
    tts = MulawTTS(seconds_per_char=0.02)


AGENTS = {"phone": Phone, "talker": Talker, "passthrough": PassthroughPhone}


def build(tmp_path, stt=None, port=None, **mount):
    port = port or free_port()
    stt = stt or ToneTranscriber()
    app = create_app(
        AGENTS, transcriber=stt, tts=FakeTTS(sample_rate=24_000, seconds_per_char=0.02), db_path=str(tmp_path / "v.db")
    )
    public = f"http://127.0.0.1:{port}"
    for name in AGENTS:
        kw = {"public_url": public, "auth_token": TOKEN} | mount
        mount_twilio(app, agent=name, prefix="/twilio" if name == "phone" else f"/tw/{name}", **kw)
    return LiveServer(app, port=port), stt


@pytest.fixture
async def live(tmp_path):
    EVENTS.clear()
    api = TwilioAPI(TOKEN)  # where hang-ups go (the REST API), as srv.twilio_api
    async with api.server:
        srv, stt = build(tmp_path, api_url=api.url)
        srv.twilio_api = api
        async with srv:
            yield srv, stt


def sign(url: str, params: dict) -> str:
    return RequestValidator(TOKEN).compute_signature(url, params)


async def webhook(srv, prefix="/twilio", call_sid="CA" + "1" * 32, caller="+14155550100", signature=None, **extra):
    url = f"{srv.http}{prefix}/voice"
    form = {"CallSid": call_sid, "From": caller, "To": "+18005550199", "AccountSid": "AC" + "0" * 32} | extra
    sig = sign(url, form) if signature is None else signature
    async with httpx.AsyncClient() as http:
        return await http.post(url, data=form, headers={"X-Twilio-Signature": sig} if sig else {})


def parse_twiml(text: str) -> tuple[str, dict[str, str]]:
    root = ET.fromstring(text)
    stream = root.find("./Connect/Stream")
    assert root.tag == "Response" and stream is not None, text
    return stream.get("url"), {p.get("name"): p.get("value") for p in stream.findall("Parameter")}


async def place_call(srv, prefix="/twilio", realtime=False, call_sid=None, caller="+14155550100") -> TwilioSim:
    """What Twilio does: POST the webhook, read the TwiML, open the stream it names with its parameters."""
    call_sid = call_sid or "CA" + hashlib.md5(str(time.monotonic()).encode()).hexdigest()
    r = await webhook(srv, prefix, call_sid=call_sid, caller=caller)
    assert r.status_code == 200, r.text
    url, params = parse_twiml(r.text)
    sim = TwilioSim(url, TOKEN, params=params, realtime=realtime, call_sid=call_sid)
    await sim.open()
    if not realtime:
        await sim.say(silence(100))
    return sim


async def history(srv, agent: str, instance: str) -> list[dict]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{srv.http}/agents/{agent}/{instance}/messages")
        return r.json()["messages"]


async def say_words(sim: TwilioSim, ms: int = 300) -> float:
    return await sim.say(tone(ms), then_silence_ms=300)


# --- G.711 ---------------------------------------------------------------------------------------------------


def test_g711_encode_is_audioop_exact_on_all_inputs():
    pcm = np.arange(-32768, 32768, dtype="<i2").tobytes()
    ours = g711.encode(pcm)
    assert hashlib.sha256(ours).hexdigest() == "81d633c9e6972a18c74a58720b96cb8ca0bdd096d4060b646dd708c3b846019a"
    if audioop is not None:
        assert ours == audioop.lin2ulaw(pcm, 2)
    vectors = {0: 0xFF, 3: 0xFF, 4: 0xFE, -1: 0x7E, -5: 0x7E, -9: 0x7D, 100: 0xF2, -100: 0x72, 1000: 0xCE}
    vectors |= {-1000: 0x4E, 8031: 0xA0, -8031: 0x20, 16384: 0x8F, -16384: 0x0F, 32767: 0x80, -32768: 0x00}
    for x, code in vectors.items():
        assert g711.encode(np.array([x], "<i2").tobytes()) == bytes([code]), x


def test_g711_decode_is_audioop_exact_on_all_codes():
    codes = bytes(range(256))
    ours = g711.decode(codes)
    assert hashlib.sha256(ours).hexdigest() == "3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827"
    if audioop is not None:
        assert ours == audioop.ulaw2lin(codes, 2)
    sine = np.array([0, 5656, 8000, 5656, 0, -5656, -8000, -5656], "<i2").tobytes()
    assert g711.encode(sine) == bytes.fromhex("FFA9A0A9FF292029")
    assert g711.encode(g711.decode(codes)) == codes.replace(b"\x7f", b"\xff")


# --- resampling continuity -------------------------------------------------------------------------------------


def _chunked(resampler: StreamResampler, pcm: np.ndarray, sizes) -> np.ndarray:
    out, i, k = [], 0, 0
    while i < len(pcm):
        n = sizes[k % len(sizes)]
        out.append(np.frombuffer(resampler.process(pcm[i : i + n].tobytes()), "<i2"))
        i, k = i + n, k + 1
    out.append(np.frombuffer(resampler.process(b"", last=True), "<i2"))
    return np.concatenate(out)


def test_inbound_upsampler_is_seamless_and_clean():
    t = np.arange(8000) / 8000
    pcm = (7000 * np.sin(2 * np.pi * 440 * t) + 3000 * np.sin(2 * np.pi * 2900 * t)).astype("<i2")
    whole = np.frombuffer(Upsampler2x().process(pcm.tobytes()), "<i2")
    assert len(whole) == 2 * len(pcm)
    for sizes in ([160], [1, 7, 160, 333, 1001, 2]):
        up, parts, i, k = Upsampler2x(), [], 0, 0
        while i < len(pcm):
            n = sizes[k % len(sizes)]
            parts.append(np.frombuffer(up.process(pcm[i : i + n].tobytes()), "<i2"))
            i, k = i + n, k + 1
        assert np.array_equal(np.concatenate(parts), whole), sizes  # bit-identical to one pass: no seams
    # the same signal as the reference resampler (soxr, one shot), up to the filters' delays
    ref = np.frombuffer(resample(pcm.tobytes(), 8000, 16000), "<i2").astype(float)
    ours = whole.astype(float)

    def snr(lag: int) -> float:
        diff = ours[2000:14000] - ref[2000 + lag : 14000 + lag]
        return 20 * np.log10(np.std(ref) / np.std(diff))

    best = max(range(-40, 41), key=snr)
    assert best == -31 and snr(best) > 60  # identical up to our fixed 31-sample (1.9 ms) delay
    # 20 ms in, 20 ms out: no block buffering (soxr's stream mode holds ~100 ms)
    assert len(Upsampler2x().process(pcm[:160].tobytes())) == 640


@pytest.mark.parametrize("rates", [(8000, 16000), (16000, 8000), (22050, 8000), (24000, 8000)])
def test_streaming_resampler_has_no_seams(rates):
    src, dst = rates
    t = np.arange(src * 2) / src
    pcm = (7000 * np.sin(2 * np.pi * 440 * t) + 3000 * np.sin(2 * np.pi * 1234 * t)).astype("<i2")
    whole = _chunked(StreamResampler(src, dst), pcm, [len(pcm)])
    # 20 ms phone frames, and odd sizes that cut the signal anywhere
    for sizes in ([src // 50], [1, 7, 160, 333, 1001, 2]):
        parts = _chunked(StreamResampler(src, dst), pcm, sizes)
        assert abs(len(parts) - len(whole)) <= 2
        n = min(len(parts), len(whole))
        assert np.max(np.abs(parts[:n].astype(int) - whole[:n])) <= 2, sizes  # same signal, no glitches at seams
        steps = np.abs(np.diff(parts[: n - 50].astype(int)))
        assert steps.max() <= np.abs(np.diff(whole[: n - 50].astype(int))).max() + 2


# --- signatures -------------------------------------------------------------------------------------------------


def test_signature_reference_vectors():
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    assert valid_signature("12345", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert valid_signature("12345", url.replace(".com", ".com:443"), params, "kvajT1Ptam85bY51eRf/AJRuM3w=")
    assert not valid_signature("12345", url, params | {"Digits": "1235"}, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not valid_signature("12345", url, params, None)
    assert not valid_signature("54321", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    form = FormParams(params.items())
    assert valid_signature("12345", url, form, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    # the WebSocket upgrade: the wss URL with no parameters, and never the https form of it
    assert valid_signature("12345", "wss://example.com/media", {}, "7PR3qMkpDyEJtMrVOY/LDyNq8J8=")
    assert not valid_signature("12345", "https://example.com/media", {}, "7PR3qMkpDyEJtMrVOY/LDyNq8J8=")
    assert stream_url("https://example.com", "/media") == "wss://example.com/media"
    assert stream_url("https://h.example.com/base/", "/twilio/media") == "wss://h.example.com/base/twilio/media"
    assert stream_url("http://127.0.0.1:8000", "/x") == "ws://127.0.0.1:8000/x"
    assert http_url("https://h.example.com/b", "/twilio/voice", "a=1") == "https://h.example.com/b/twilio/voice?a=1"


async def test_webhook_twiml_and_signature_checks(live):
    srv, _ = live
    r = await webhook(srv)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    assert r.text.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url=')
    url, params = parse_twiml(r.text)
    assert url == f"ws://127.0.0.1:{srv.port}/twilio/media"  # from the configured public URL (http → ws)
    assert params["agent"] == "phone" and params["instance"] == "CA" + "1" * 32
    assert params["from"] == "+14155550100" and params["token"]
    # tampered, missing, wrong-token signatures and a forged Host header: 403
    assert (await webhook(srv, signature="bm90IGEgc2lnbmF0dXJl")).status_code == 403
    assert (await webhook(srv, signature="")).status_code == 403
    good = sign(f"{srv.http}/twilio/voice", {"CallSid": "CAx", "From": "+1", "To": "+2", "AccountSid": "AC"})
    async with httpx.AsyncClient() as http:
        tampered = {"CallSid": "CAy", "From": "+1", "To": "+2", "AccountSid": "AC"}
        r = await http.post(f"{srv.http}/twilio/voice", data=tampered, headers={"X-Twilio-Signature": good})
        assert r.status_code == 403
        evil = "https://evil.example.com/twilio/voice"
        form = {"CallSid": "CAz"}
        headers = {"X-Twilio-Signature": sign(evil, form), "Host": "evil.example.com"}
        r = await http.post(f"{srv.http}/twilio/voice", data=form, headers=headers)
        assert r.status_code == 403


async def test_instance_from_caller(tmp_path):
    srv, _ = build(tmp_path, instance_from="caller")
    async with srv:
        _, params = parse_twiml((await webhook(srv, caller="+14155550123")).text)
        assert params["instance"] == "+14155550123"
        _, params = parse_twiml((await webhook(srv, call_sid="CA" + "9" * 32, caller="anonymous")).text)
        assert params["instance"] == "CA" + "9" * 32  # withheld numbers do not share one history


async def test_stream_upgrade_requires_a_valid_signature(live):
    srv, stt = live
    url = f"ws://127.0.0.1:{srv.port}/twilio/media"
    https_form = RequestValidator(TOKEN).compute_signature(url.replace("ws:", "http:"), {})
    for bad in ("", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", https_form):
        sim = TwilioSim(url, TOKEN, signature=bad)
        with pytest.raises(websockets.exceptions.InvalidStatus) as exc:
            await sim.connect()
        assert exc.value.response.status_code == 403
    # a valid signature but a start without our per-call token is refused before any audio is processed
    sim = TwilioSim(url, TOKEN, params={"agent": "phone", "instance": "victim"}, realtime=False)
    await sim.open()
    with contextlib.suppress(websockets.ConnectionClosed):
        await sim.say(tone(300), then_silence_ms=300)
    await sim.wait(lambda: sim.closed_by_app is not None, what="close")
    assert sim.closed_by_app[1] == 1008
    assert stt.sessions == [] and srv.app.state.voice.runtime._instances == {}
    await sim.close()


async def _status(app, path: str) -> int:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        return (await http.post(path, data={"CallSid": "CA1"})).status_code


async def test_not_mounted_without_a_token_unless_insecure_dev(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("VOICE_PUBLIC_URL", raising=False)
    app = create_app({"phone": Phone}, transcriber=ToneTranscriber(), tts=FakeTTS(), db_path=str(tmp_path / "a.db"))
    assert mount_twilio(app, agent="phone", public_url="https://x.example.com") is False
    assert maybe_mount_twilio(app) is False
    assert await _status(app, "/twilio/voice") == 404
    with pytest.raises(ValueError):
        mount_twilio(app, agent="nope", public_url="https://x.example.com", auth_token="t")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    with pytest.raises(ValueError):  # a token but no public URL: refuse to guess it from headers
        maybe_mount_twilio(app)
    monkeypatch.setenv("VOICE_PUBLIC_URL", "https://x.example.com")
    assert maybe_mount_twilio(app) is True
    assert await _status(app, "/twilio/voice") == 403  # mounted, and unsigned requests are refused
    # insecure_dev: mounted without a token, loudly, and unsigned requests work
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    port = free_port()
    app = create_app({"phone": Phone}, transcriber=ToneTranscriber(), tts=FakeTTS(), db_path=str(tmp_path / "b.db"))
    with caplog.at_level(logging.WARNING, logger="voice.twilio"):
        assert mount_twilio(app, agent="phone", public_url=f"http://127.0.0.1:{port}", insecure_dev=True)
    assert "INSECURE" in caplog.text
    async with LiveServer(app, port=port) as srv:
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{srv.http}/twilio/voice", data={"CallSid": "CAdev", "From": "+15550001"})
        url, params = parse_twiml(r.text)
        assert "token" not in params
        sim = TwilioSim(url, None, params=params, signature="", realtime=False)
        await sim.open()
        await sim.say(silence(100))
        await say_words(sim)
        await sim.wait(lambda: sim.played_bytes() >= 1120, what="reply audio")  # FakeTTS(): ~0.15 s
        await sim.stop()


async def test_routes_go_before_static_files(tmp_path):
    (tmp_path / "index.html").write_text("hi")
    for target in ("app", "server"):
        app = create_app(
            {"phone": Phone},
            transcriber=ToneTranscriber(),
            tts=FakeTTS(),
            db_path=str(tmp_path / "s.db"),
            static_dir=tmp_path,
        )
        where = app if target == "app" else app.state.voice
        assert mount_twilio(where, agent="phone", public_url="https://x.example.com", auth_token=TOKEN)
        assert await _status(app, "/twilio/voice") == 403, target  # our route (signature refused), not static files


# --- whole calls ------------------------------------------------------------------------------------------------


async def test_a_phone_call_end_to_end(live):
    srv, stt = live
    stt.script.extend(["good morning"])
    sim = await place_call(srv)
    await say_words(sim)
    expected = len("You said: good morning.") * 0.02 * 8000
    await sim.wait(lambda: len(sim.received) >= expected * 0.95, what="reply audio")
    await sim.wait(lambda: sim.played_bytes() >= len(sim.received) and not sim._fifo, timeout=4, what="playout")
    assert ("turn", "good morning", "+14155550100") in EVENTS
    assert abs(len(sim.received) - expected) < 0.05 * expected
    pcm = sim.received_pcm().astype(float)
    assert np.sqrt(np.mean(pcm**2)) > 3000  # the tone, not silence
    assert sim.errors == []
    kinds = sim.kinds()
    assert kinds.count("media") >= expected / 160 * 0.9  # ~20 ms media messages
    assert kinds.count("mark") >= 3 and "clear" not in kinds
    assert all(not e.cleared for e in sim.echoes)
    await asyncio.sleep(0.3)
    msgs = await history(srv, "phone", sim.call_sid)
    assert [(m["role"], m["content"], m["interrupted"]) for m in msgs] == [
        ("user", "good morning", False),
        ("assistant", "You said: good morning.", False),
    ]
    await sim.stop()
    await asyncio.sleep(0.2)
    assert stt.sessions[-1].closed and srv.app.state.voice.runtime._instances == {}


async def test_mulaw_passthrough_tts_is_sent_bit_exact(live):
    srv, stt = live
    stt.script.extend(["hi"])
    sim = await place_call(srv, prefix="/tw/passthrough")
    await say_words(sim)
    tts = PassthroughPhone.tts
    # spoken in two chunks: the first ends early at its clause break, to start audio sooner
    expected = g711.encode(tts.audio_for("You said:", 8000) + tts.audio_for("hi.", 8000))
    await sim.wait(lambda: len(sim.received) >= len(expected), what="reply audio")
    assert bytes(sim.received) == expected
    await sim.stop()


async def test_robust_to_junk_and_odd_frames(live):
    srv, stt = live
    r = await webhook(srv, call_sid="CA" + "7" * 32)
    url, params = parse_twiml(r.text)
    sim = TwilioSim(url, TOKEN, params=params, realtime=False, call_sid="CA" + "7" * 32)
    await sim.connect()
    await sim.send_connected()
    await sim.send_media(g711.encode(tone(200)))  # media before start: dropped
    await sim.send_raw({"event": "dtmf", "dtmf": {"digit": "5"}})  # dtmf before start: dropped
    await sim.send_start()
    await sim.send_start()  # a second start: ignored
    junk = [
        "not json",
        "[1, 2, 3]",
        "null",
        b"\x00\x01binary",
        {"event": "whatever", "streamSid": sim.stream_sid, "new": {"field": 1}},
        {"no_event": True},
        {"event": "media", "streamSid": sim.stream_sid},
        {"event": "media", "streamSid": sim.stream_sid, "media": "nope"},
        {"event": "media", "streamSid": sim.stream_sid, "media": {"payload": "!!!not base64!!!"}},
        {"event": "media", "streamSid": sim.stream_sid, "media": {"payload": 12345}},
        {"event": "media", "streamSid": sim.stream_sid, "sequenceNumber": 5, "media": {"chunk": 3, "timestamp": 60}},
        {"event": "mark", "streamSid": sim.stream_sid, "mark": {"name": "not-ours"}},
        {"event": "mark", "streamSid": sim.stream_sid, "mark": {"name": "99:123456"}},
        {"event": "mark", "streamSid": sim.stream_sid},
        {"event": "dtmf", "streamSid": sim.stream_sid, "dtmf": {"digit": "55"}},
        {"event": "dtmf", "streamSid": sim.stream_sid, "dtmf": None},
        {"event": "stop", "streamSid": "MZ" + "f" * 32},  # another stream's stop: ignored
    ]
    for message in junk:
        await sim.send_raw(message)
    # loud audio under the wrong streamSid is dropped (it would otherwise be an utterance)
    await sim.send_media(g711.encode(tone(400) + silence(300)), stream_sid="MZ" + "e" * 32)
    await sim.send_media(g711.encode(silence(100)))
    await asyncio.sleep(0.3)
    assert stt.finals == [] and stt.sessions and stt.sessions[0].fed_bytes > 0
    # frames of any length, numeric fields as numbers: decoded and resampled continuously
    fed_before = stt.sessions[0].fed_bytes
    mulaw = g711.encode(tone(600) + silence(400))
    sizes = [1, 7, 159, 161, 800, 3, 2000]
    i = k = 0
    while i < len(mulaw):
        n = sizes[k % len(sizes)]
        await sim.send_raw(
            {
                "event": "media",
                "sequenceNumber": 100 + k,
                "media": {"chunk": k, "timestamp": 20 * k, "payload": base64.b64encode(mulaw[i : i + n]).decode()},
                "streamSid": sim.stream_sid,
            }
        )
        i, k = i + n, k + 1
    await sim.wait(lambda: len(sim.received) > 2000, what="a reply after the junk")
    fed = stt.sessions[0].fed_bytes - fed_before
    assert fed == 4 * len(mulaw)  # each 8 kHz μ-law byte → two 16 kHz int16 samples, whatever the framing
    assert [text for _, text in stt.finals] == ["hello"]
    assert sim.closed_by_app is None and sim.errors == []
    await sim.stop()


async def test_dtmf_reaches_on_dtmf_in_order(live):
    srv, _ = live
    sim = await place_call(srv)
    for digit in "12*9":
        await sim.dtmf(digit)
    await asyncio.sleep(0.2)
    assert [e[1] for e in EVENTS if e[0] == "dtmf"] == list("12*9")
    await sim.stop()


async def test_agent_hangup_ends_the_call_after_its_goodbye(live):
    srv, _ = live
    sim = await place_call(srv)
    srv.twilio_api.calls[sim.call_sid] = sim.stop  # the REST API ends the call: Twilio stops the stream
    await sim.dtmf("#")
    await sim.wait(lambda: sim._closing, timeout=5, what="hang-up")
    goodbye = len("Goodbye now.") * 0.02 * 8000
    assert srv.twilio_api.requests == [{"sid": sim.call_sid, "status": "completed", "authorized": True,
                                        "method": "POST"}]
    assert sim.played_bytes() >= goodbye * 0.95  # the goodbye was heard before the call ended
    msgs = await history(srv, "phone", sim.call_sid)
    assert msgs[-1]["content"] == "Goodbye now." and not msgs[-1]["interrupted"]
    await sim.close()


@pytest.mark.parametrize("how", ["stop", "socket-drop"])
async def test_caller_hangs_up_mid_reply(live, how):
    srv, stt = live
    sim = await place_call(srv, prefix="/tw/talker", realtime=True)
    await say_words(sim)
    await sim.wait(lambda: sim.first_media_at is not None, what="reply audio")
    await asyncio.sleep(1.2)
    heard_samples = sim.played_bytes()
    await (sim.stop() if how == "stop" else sim.close())  # with or without Twilio's "stop" event
    await asyncio.sleep(0.3)
    msgs = await history(srv, "talker", sim.call_sid)
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    reply = msgs[-1]
    assert reply["interrupted"] and reply["content"].startswith("Alpha bravo charlie delta echo foxtrot.")
    assert "Mike" not in reply["content"]
    _check_heard_words(reply["content"], heard_samples)
    assert stt.sessions[-1].closed and srv.app.state.voice.runtime._instances == {}


def _check_heard_words(heard: str, played_samples: int) -> None:
    """The stored words match what the simulated caller's speaker actually played (±2 words)."""
    sentences = [s + "." for s in TALK.rstrip(".").split(". ")]
    per_sentence = [len(s) * 0.02 * 8000 for s in sentences]  # FakeTTS: 0.02 s per character
    words, left = 0, played_samples
    for text, dur in zip(sentences, per_sentence):
        n = len(text.split())
        words += n if left >= dur else int(n * left / dur)
        if left < dur:
            break
        left -= dur
    assert abs(len(heard.split()) - words) <= 2, (heard, played_samples, words)


@pytest.mark.parametrize("stt_speech_events", [True, False], ids=["stt-speech-start", "engine-vad"])
async def test_barge_in_clears_twilio_and_keeps_heard_text(tmp_path, stt_speech_events):
    EVENTS.clear()
    srv, _ = build(tmp_path, stt=ToneTranscriber(emits_speech_start=stt_speech_events))
    async with srv:
        sim = await place_call(srv, prefix="/tw/talker", realtime=True)
        await say_words(sim)
        await sim.wait(lambda: sim.first_media_at is not None, what="reply audio")
        await asyncio.sleep(1.3)
        onset = await sim.say(tone(500), then_silence_ms=300)
        await sim.wait(lambda: sim.clears, timeout=2, what="clear")
        latency = sim.clears[0] - onset
        heard_samples = sum(len(p.mulaw) for p in sim.played if p.at <= sim.clears[0])
        print(f"barge-in ({'stt' if stt_speech_events else 'vad'}): clear {1000 * latency:.0f} ms after onset")
        assert latency < (0.25 if stt_speech_events else 0.4)
        # the marks still pending at the clear came back as cleared
        assert any(e.cleared for e in sim.echoes)
        await asyncio.sleep(0.5)
        msgs = await history(srv, "talker", sim.call_sid)
        reply = next(m for m in msgs if m["role"] == "assistant")
        assert reply["interrupted"] and reply["content"].startswith("Alpha bravo charlie delta echo foxtrot.")
        assert "Sierra" not in reply["content"]
        _check_heard_words(reply["content"], heard_samples)
        # the barge-in utterance became a new turn whose reply plays after the clear
        clear_at = sim.clears[0]
        await sim.wait(lambda: any(t > clear_at and m["event"] == "media" for t, m in sim.events), what="next reply")
        next_reply = min(t for t, m in sim.events if t > clear_at and m["event"] == "media")
        assert next_reply - clear_at > 0.3  # the next reply waits for the barge-in utterance to end
        # from the clear until the next reply, the caller's speaker is silent: nothing of the old reply leaks
        assert sum(len(p.mulaw) for p in sim.played if clear_at + 0.006 < p.at < next_reply) == 0
        assert sim.errors == []
        await sim.stop()


async def test_pacing_keeps_twilio_buffer_short(live):
    srv, _ = live
    sim = await place_call(srv, prefix="/tw/talker", realtime=True)
    await say_words(sim)
    await sim.wait(lambda: sim.first_media_at is not None, what="reply audio")
    t0 = sim.first_media_at
    await asyncio.sleep(2.1)

    def received_by(t: float) -> float:
        media = [m["media"]["payload"] for at, m in sim.events if m["event"] == "media" and at <= t]
        return sum(len(base64.b64decode(p)) for p in media) / 8000

    lead = sim.max_queued(after=t0 + 0.3)
    received = received_by(t0 + 2.0)
    print(f"pacing: max queued at the simulated Twilio {1000 * lead:.0f} ms; received {received:.2f} s in 2.0 s")
    assert 0.08 <= lead <= 0.25
    assert 2.0 <= received <= 2.0 + 0.25  # real-time pace plus the lead, not a dump of the 3.2 s reply
    assert sim.starved == []
    media = [t for t, m in sim.events if m.get("event") == "media" and t > t0 + 0.5]
    gaps = np.diff(media)
    assert np.median(gaps) < 0.03  # ~20 ms messages, spread out
    await sim.wait(lambda: not sim._fifo and sim.played_bytes() >= len(sim.received), timeout=4, what="playout")
    assert len(sim.received) == pytest.approx(len(TALK) * 0.02 * 8000, rel=0.02)
    await sim.stop()


# --- TwilioOutput bookkeeping ------------------------------------------------------------------------------------


class _Sink:
    closed = False

    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []

    def send_media(self, mulaw: bytes) -> None:
        self.sent.append(("media", len(mulaw)))

    def send_mark(self, name: str) -> None:
        self.sent.append(("mark", name))

    def send_clear(self) -> None:
        self.sent.append(("clear", None))


async def test_output_marks_and_clear_semantics():
    now = [100.0]
    sink = _Sink()
    out = TwilioOutput(sink, lead=10.0, mark_every=0.1, clock=lambda: now[0])  # lead 10 s: no waiting here
    assert out.passthrough == ("mulaw", 8000) and out.sample_rate == 8000
    await out.write(AudioChunk(bytes(8000 * 2), 8000))  # 1 s of pcm16 silence at 8 kHz
    assert out.written == 8000
    await out.drain()
    marks = [name for kind, name in sink.sent if kind == "mark"]
    assert marks[-1] == "0:8000" and len(marks) == 10
    assert all(n == 160 for kind, n in sink.sent if kind == "media")
    assert out.played() == 0
    now[0] += 0.3  # by time alone, 0.3 s could have played...
    assert out.played() == 2400
    out.on_mark("0:800")  # ...but Twilio says 0.1 s: trust the echo, interpolate from it
    assert out.played() == 800
    now[0] += 0.05
    assert out.played() == 1200
    heard = await out.clear()
    assert heard == 1200 and sink.sent[-1] == ("clear", None)
    out.on_mark("0:1600")  # the flood of echoes after a clear: cleared, not played
    out.on_mark("0:8000")
    assert out.played() == 8000 and not out.is_playing() and out.marks_cleared == 2
    await out.write(AudioChunk(g711.encode(bytes(1600 * 2)), 8000, "mulaw"))
    await out.drain()
    assert out.written == 9600 and out.is_playing()
    assert [n for k, n in sink.sent if k == "mark"][-1] == "1:9600"
    now[0] += 1.0
    assert out.played() == 9600
    out.close()


async def test_output_pause_clears_twilio_and_resume_resends_from_the_heard_sample():
    now = [100.0]
    sink = _Sink()
    out = TwilioOutput(sink, lead=0.5, mark_every=0.1, clock=lambda: now[0])
    ramp = (np.arange(8000) % 256).astype(np.uint8)  # 1 s of distinct μ-law codes, to follow each sample
    sent: list[bytes] = []
    sink.send_media = lambda mulaw: sent.append(bytes(mulaw))  # type: ignore[method-assign]
    await out.write(AudioChunk(ramp.tobytes(), 8000, "mulaw"))
    await asyncio.sleep(0.01)  # the pacer sends the lead: about 0.5 s
    before = sum(len(s) for s in sent)
    assert 4000 <= before <= 4160
    now[0] += 0.2
    out.on_mark("0:1600")  # Twilio played 0.2 s
    out.pause()
    assert sink.sent[-1] == ("clear", None) and out.played() == 1600
    now[0] += 1.0  # paused: nothing more is heard or sent
    await asyncio.sleep(0.01)
    assert out.played() == 1600 and sum(len(s) for s in sent) == before
    out.resume()
    for _ in range(200):  # Twilio's clock runs on: the pacer keeps about 0.5 s ahead of it
        if not out._queue:
            break
        now[0] += 0.1
        await asyncio.sleep(0.005)
    heard_stream = b"".join(sent)
    # what was sent after the resume starts exactly at sample 1600 and runs to the end, in order, once
    assert heard_stream[before:] == ramp.tobytes()[1600:]
    out.on_mark(f"{out._epoch}:8000")
    assert out.played() == 8000 and not out.is_playing()
    out.close()
