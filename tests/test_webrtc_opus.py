"""Our own Opus path for WebRTC (voice/transports/webrtc/codec.py and opus.py) against aiortc's codecs, both ways,
with the real models: the agent's Piper voice as the client decodes it, and the caller's Piper speech as the
engine receives it, compared with what went in (SNR, log-spectral distance, level) and transcribed by Whisper.
The direct path must be at least as intelligible and no worse in fidelity than aiortc's 96 kbps stereo path.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import pytest_asyncio
from aiortc.rtp import is_rtcp

from tests.audio_quality import align, align_chunks, level_db, lsd_db, snr_db
from tests.harness import LiveServer
from tests.speech import piper_speech, silence, wer
from tests.test_webrtc import transcribe, until, wait_greeting_played
from tests.webrtc_peer import WebRTCTestPeer, use_loopback_ice
from voice import create_app
from voice.audio import resample
from voice.demo import EchoAssistant
from voice.local import PiperTTS, WhisperTranscriber
from voice.transports.webrtc import mount_webrtc
from voice.transports.webrtc.codec import PACKET_MS, OpusAgentTrack, negotiated_opus, opus_payload_type
from voice.transports.webrtc.opus import OpusDecoder, OpusEncoder

pytestmark = pytest.mark.asyncio(loop_scope="module")

STT = WhisperTranscriber()
TTS = PiperTTS(deterministic=True)
REPLY = "Please call Stella and ask her to bring these things with her from the store. Six spoons of fresh snow peas."
SAID = "I would like to book a table for four people at seven thirty tomorrow evening."


@pytest.fixture(scope="module", autouse=True)
def loopback_ice():
    undo = use_loopback_ice()
    yield
    undo()


class RecordingSTT:
    """Whisper, keeping every PCM chunk the engine feeds it (what the transport delivered), per session."""

    def __init__(self, inner: WhisperTranscriber) -> None:
        self.inner = inner
        self.fed: list[bytearray] = []

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    async def create_session(self, options):
        session = await self.inner.create_session(options)
        fed = bytearray()
        self.fed.append(fed)
        feed = session.feed

        def recording_feed(pcm: bytes) -> None:
            fed.extend(pcm)
            feed(pcm)

        session.feed = recording_feed
        return session


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def servers(tmp_path_factory):
    """One server per codec path: {"direct": ..., "aiortc": ...}."""
    live = {}
    for path in ("direct", "aiortc"):
        stt = RecordingSTT(STT)
        db = str(tmp_path_factory.mktemp(path) / "voice.db")
        app = create_app({"assistant": EchoAssistant}, transcriber=stt, tts=TTS, db_path=db, webrtc=False)
        assert mount_webrtc(app, max_peers=4, direct_opus=path == "direct")
        server = LiveServer(app)
        live[path] = await server.__aenter__()
        live[path].voice = app.state.voice
        live[path].stt = stt
    yield live
    for server in live.values():
        await server.__aexit__(None, None, None)


def session_of(server, instance: str):
    return next(s for s in server.voice.webrtc.sessions if s.agent.instance_id == instance)


async def agent_reply(server, instance: str) -> tuple[list[bytes], bytes, str, object]:
    """Ask for :data:`REPLY`: (what the server wrote, at 16 kHz, in the runs it played without pausing, what the
    client received, the reply text, the session)."""
    peer = await WebRTCTestPeer(server.http, "assistant", instance).connect()
    try:
        await peer.start_call()
        await wait_greeting_played(server, peer, instance)
        session = session_of(server, instance)
        segments: list[bytearray] = []  # runs of audio that play without a pause in between
        write = session.output.write

        async def recording_write(chunk) -> None:
            if not segments or not session.output.queued_samples():  # the queue ran dry: the track paused here
                segments.append(bytearray())
            segments[-1].extend(chunk.data)
            await write(chunk)

        session.output.write = recording_write
        mark = peer.mark()
        start = time.monotonic()
        peer.send({"type": "text_message", "text": REPLY})
        end = await peer.wait_for("transcript_end", after=mark, timeout=15)
        await until(lambda: session.call.turn is None and not session.output.is_playing(), 20, "reply played")
        await asyncio.sleep(0.5)  # network + the client's jitter buffer
        written = [resample(bytes(segment), session.output.sample_rate, 16_000) for segment in segments]
        return written, peer.received_since(start), end["text"], session
    finally:
        await peer.close()


async def caller_speech(server, instance: str) -> tuple[bytes, str]:
    """Say :data:`SAID` into the microphone: (the PCM the engine received, the user transcript)."""
    peer = await WebRTCTestPeer(server.http, "assistant", instance).connect()
    try:
        await peer.start_call()
        await wait_greeting_played(server, peer, instance)
        fed = server.stt.fed[-1]
        before = len(fed)
        mark = peer.mark()
        peer.mic.play(piper_speech(SAID) + silence(1200))
        user = await peer.wait_for("transcript", after=mark, role="user", timeout=20)
        return bytes(fed[before:]), user["text"]
    finally:
        await peer.close()


def fidelity(reference: np.ndarray, degraded: np.ndarray) -> dict:
    return {"snr": snr_db(reference, degraded), "lsd": lsd_db(reference, degraded), "level": level_db(reference, degraded)}


async def test_agent_voice_quality(servers):
    """The agent's voice at the client: as intelligible as over aiortc's path, at the source's level (aiortc's
    stereo upmix is ~3 dB quieter), no worse in spectral distance; and it went out as 60 ms Opus packets."""
    results = {}
    for path, server in servers.items():
        written, received, text, session = await agent_reply(server, f"voice-{path}")
        ref, deg = align_chunks(written, received)
        heard = await transcribe(received)
        results[path] = fidelity(ref, deg) | {"wer": wer(text, heard), "heard": heard, "session": session}
    direct, old = results["direct"], results["aiortc"]
    summary = {p: {k: v for k, v in r.items() if k != "session"} for p, r in results.items()}
    print("agent voice:", summary)
    assert direct["wer"] <= 0.15 and direct["wer"] <= old["wer"] + 0.05, summary
    assert abs(direct["level"]) <= 1.0, summary  # aiortc's path: about -3 dB
    assert direct["lsd"] <= old["lsd"] + 1.0 and direct["lsd"] <= 5.0, summary
    assert direct["snr"] >= 10.0, summary
    track = direct["session"].track
    assert isinstance(track, OpusAgentTrack) and track.encoder is not None
    assert track.encoded_frames == 3 * track.packets and PACKET_MS == 60
    assert not isinstance(old["session"].track, OpusAgentTrack)


async def test_caller_voice_quality(servers):
    """The caller's speech as the engine gets it: decoded straight to 16 kHz, as close to the source as aiortc's
    48 kHz stereo decode + mixdown + resampling, and transcribed as well."""
    source = piper_speech(SAID)
    results = {}
    for path, server in servers.items():
        fed, transcript = await caller_speech(server, f"caller-{path}")
        ref, deg, _ = align(source, fed, max_lag=len(fed) // 2 - len(source) // 2)
        results[path] = fidelity(ref, deg) | {"wer": wer(SAID, transcript), "text": transcript}
    direct, old = results["direct"], results["aiortc"]
    print("caller voice:", results)
    assert direct["wer"] <= 0.2 and direct["wer"] <= old["wer"] + 0.05, results
    assert abs(direct["level"] - old["level"]) <= 0.5, results
    assert direct["snr"] >= old["snr"] - 1.0 and direct["lsd"] <= old["lsd"] + 0.5, results


async def test_silence_sends_nothing_and_the_decoder_is_ours(servers):
    """While the agent is silent the track sends no packets (the encoder first settles on digital silence);
    the caller's audio goes through our decoder, not aiortc's."""
    server = servers["direct"]
    peer = await WebRTCTestPeer(server.http, "assistant", "quiet").connect()
    try:
        await peer.start_call()
        await wait_greeting_played(server, peer, "quiet")
        session = session_of(server, "quiet")
        assert negotiated_opus(session.pc.localDescription.sdp)
        await asyncio.sleep(0.5)  # the settling packets
        packets, received = session.track.packets, peer.frames_received
        await asyncio.sleep(1.5)
        assert session.track.packets == packets and peer.frames_received == received
        decoded = session.audio_in.decoded_frames
        assert decoded > 0 and session.audio_in.errors == 0
        await asyncio.sleep(0.5)
        assert session.audio_in.decoded_frames >= decoded + 20  # the microphone's 20 ms packets, all ours
        mark = peer.mark()
        peer.send({"type": "text_message", "text": "Back again."})
        await peer.wait_for("transcript_end", after=mark, timeout=10)
        await until(lambda: session.track.packets > packets, 5, "speaking again")
    finally:
        await peer.close()


async def test_codec_round_trip():
    """The libopus binding on its own: Piper speech through our encoder and decoder at 16 kHz is intelligible
    audio at the right level, and bad input is refused."""
    pcm = piper_speech(SAID, 48_000)
    pcm += bytes(-len(pcm) % 5760)
    encoder, decoder = OpusEncoder(), OpusDecoder(16_000, 1)
    assert encoder.bitrate == 32_000
    out = b"".join(decoder.decode(encoder.encode(pcm[i : i + 5760])) for i in range(0, len(pcm), 5760))
    assert len(out) == len(pcm) // 3
    ref, deg, _ = align(resample(pcm, 48_000, 16_000), out, 2000)
    assert snr_db(ref, deg) > 8 and abs(level_db(ref, deg)) < 1 and lsd_db(ref, deg) < 6
    with pytest.raises(ValueError):
        encoder.encode(bytes(1000))
    from voice.transports.webrtc.opus import OpusError

    with pytest.raises(OpusError):
        decoder.decode(b"\xff\xff\xff")


def lossy_uplink(peer: WebRTCTestPeer, drop_every: int, swap_every: int) -> dict:
    """Make ``peer``'s outgoing RTP lose every ``drop_every``-th packet and swap every ``swap_every``-th with the
    one after it (RTCP untouched), at the client's DTLS transport: the server sees a lossy, reordering network."""
    transport = peer.pc.getTransceivers()[0].sender.transport
    send = transport._send_rtp
    state: dict = {"n": 0, "held": None, "dropped": 0, "swapped": 0}

    async def send_rtp(data: bytes) -> None:
        if is_rtcp(data):
            return await send(data)
        state["n"] += 1
        if state["n"] % drop_every == 0:
            state["dropped"] += 1
            return
        held, state["held"] = state["held"], None
        if held is None and state["n"] % swap_every == 0:
            state["held"] = data
            state["swapped"] += 1
            return
        await send(data)
        if held is not None:
            await send(held)

    transport._send_rtp = send_rtp
    return state


async def test_lost_and_reordered_packets_keep_the_callers_time(servers):
    """A lossy uplink (one RTP packet in 15 lost, one in 9 arriving after the next): reordered packets are put
    back in order, lost ones concealed, so the engine hears as much time as the caller spoke and Whisper still
    understands; aiortc's decoder queue is not used."""
    server = servers["direct"]
    peer = await WebRTCTestPeer(server.http, "assistant", "lossy").connect()
    try:
        network = lossy_uplink(peer, drop_every=15, swap_every=9)
        await peer.start_call()
        await wait_greeting_played(server, peer, "lossy")
        session = session_of(server, "lossy")
        assert session.jitter is not None and session.jitter.payload_type == opus_payload_type(session.pc.localDescription.sdp)
        tap = session.audio_in
        before, sent_before = tap.decoded_samples + tap.concealed_samples, peer.mic.frames_sent
        lost_before = session.jitter.order.lost
        mark = peer.mark()
        peer.mic.play(piper_speech(SAID) + silence(1200))
        user = await peer.wait_for("transcript", after=mark, role="user", timeout=20)
        await peer.mic.played()
        await asyncio.sleep(0.3)
        heard = (tap.decoded_samples + tap.concealed_samples - before) / 16_000  # what the transport delivered
        sent = (peer.mic.frames_sent - sent_before) * 0.02  # what the microphone sent meanwhile
        order = session.jitter.order
        print("lossy uplink:", network, {"lost": order.lost, "late": order.late, "heard_s": heard, "sent_s": sent,
                                         "concealed": session.audio_in.concealed_samples, "text": user["text"]})
        assert network["dropped"] >= 5 and network["swapped"] >= 5
        assert order.lost - lost_before >= network["dropped"] // 2 and order.late <= 1
        assert session.audio_in.concealed_samples > 0 and session.audio_in.errors == 0
        assert abs(heard - sent) <= 0.1, (heard, sent)  # the call's audio clock kept the caller's time
        assert wer(SAID, user["text"]) <= 0.25, user["text"]
        assert session.pc.getTransceivers()[0].receiver._RTCRtpReceiver__decoder_queue.empty()
    finally:
        await peer.close()
