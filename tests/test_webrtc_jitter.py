"""The caller's side of the WebRTC Opus path without sockets: the jitter buffer's ordering decisions (a table, in
the style of sans-I/O protocol tests), the answer's requests to the caller's encoder, and the decoder's
concealment of lost packets on real Opus. The same path with real peers: tests/test_webrtc_opus.py (loss and
reordering on loopback) and tests/test_webrtc_browser.py (Chromium's packets)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.speech import piper_speech
from voice.transports.webrtc.codec import DirectOpusInput, OpusJitterTap, ask_caller_for, opus_payload_type
from voice.transports.webrtc.jitter import AudioJitter
from voice.transports.webrtc.opus import OpusEncoder

# (packets in, as sequence numbers; what each push releases)
ORDER_CASES = {
    "in order: each packet at once": ([1, 2, 3], [[1], [2], [3]]),
    "swapped pair: held, then both": ([1, 3, 2, 4], [[1], [], [2, 3], [4]]),
    "late beyond the hold: a loss, then dropped": ([1, 3, 4, 5, 2, 6], [[1], [], [], ["3!", 4, 5], [], [6]]),
    "two lost in a row": ([1, 4, 5, 6], [[1], [], [], ["4!", 5, 6]]),
    "duplicate dropped": ([1, 2, 2, 3], [[1], [2], [], [3]]),
    "duplicate of a held packet dropped": ([1, 3, 3, 2], [[1], [], [], [2, 3]]),
    "sequence numbers wrap": ([65534, 65535, 0, 1], [[65534], [65535], [0], [1]]),
    "reordered across the wrap": ([65534, 0, 65535, 1], [[65534], [], [65535, 0], [1]]),
    "a far jump is a new stream": ([1, 2, 40000, 40001], [[1], [2], [40000], [40001]]),
    "a far jump back is a new stream too": ([40000, 40001, 5, 6], [[40000], [40001], [5], [6]]),
}


@pytest.mark.parametrize("arrivals, expected", ORDER_CASES.values(), ids=ORDER_CASES.keys())
def test_release_order(arrivals, expected):
    jitter = AudioJitter(hold=2)
    got = []
    for seq in arrivals:
        released = jitter.push(seq, seq * 960, bytes([seq % 256]))
        got.append([f"{r.timestamp // 960}!" if r.after_loss else r.timestamp // 960 for r in released])
        assert all(r.payload == bytes([(r.timestamp // 960) % 256]) for r in released)
    assert got == expected


def test_counts_and_hold():
    jitter = AudioJitter(hold=1)
    assert jitter.push(10, 0, b"a")  # the first packet starts the stream
    assert jitter.push(12, 0, b"c") == [] and jitter.held == 1
    released = jitter.push(13, 0, b"d")  # hold of 1 exceeded: 11 is given up on
    assert [r.payload for r in released] == [b"c", b"d"] and released[0].after_loss and jitter.lost == 1
    assert jitter.push(11, 0, b"b") == [] and jitter.late == 1
    assert jitter.push(50_000, 0, b"x") and jitter.restarts == 1
    with pytest.raises(ValueError):
        AudioJitter(hold=0)


AIORTC_ANSWER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8", "c=IN IP4 0.0.0.0", "a=sendrecv", "a=mid:0",
    "a=rtpmap:111 opus/48000/2", "a=rtcp-fb:111 nack", "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 0.0.0.0", "a=mid:1", "a=sctp-port:5000", "",
])


def audio_section(sdp: str) -> list[str]:
    lines = sdp.split("\r\n")
    start = lines.index(next(line for line in lines if line.startswith("m=audio")))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("m="))
    return lines[start:end]


def test_the_answer_asks_for_longer_wideband_packets():
    answer = ask_caller_for(AIORTC_ANSWER, 40)
    section = audio_section(answer)
    assert "a=ptime:40" in section
    assert "a=fmtp:111 minptime=10;useinbandfec=1;maxplaybackrate=16000" in section
    assert answer.count("a=ptime") == 1 and answer.endswith("\r\n")
    assert answer.split("m=application")[1] == AIORTC_ANSWER.split("m=application")[1]  # other sections as they were
    assert ask_caller_for(answer, 40) == answer  # asking twice changes nothing
    assert "a=ptime" not in ask_caller_for(AIORTC_ANSWER, 0)  # 0: the caller's choice
    assert opus_payload_type(answer) == 111


def test_the_answer_without_opus_or_without_fmtp():
    pcmu_only = AIORTC_ANSWER.replace("111 0 8", "0 8").replace("a=rtpmap:111 opus/48000/2\r\n", "")
    pcmu_only = pcmu_only.replace("a=rtcp-fb:111 nack\r\n", "").replace("a=fmtp:111 minptime=10;useinbandfec=1\r\n", "")
    assert opus_payload_type(pcmu_only) is None and ask_caller_for(pcmu_only, 40) == pcmu_only
    no_fmtp = AIORTC_ANSWER.replace("a=fmtp:111 minptime=10;useinbandfec=1\r\n", "")
    section = audio_section(ask_caller_for(no_fmtp, 60))
    assert section[section.index("a=rtpmap:111 opus/48000/2") + 1] == "a=fmtp:111 maxplaybackrate=16000"
    assert "a=ptime:60" in section


def test_lost_packets_are_concealed_and_time_is_kept():
    """Real Opus (40 ms packets of Piper speech): a lost packet becomes 40 ms of concealment, so the engine hears
    exactly as much time as the caller spoke; reordered packets are decoded in order."""
    pcm = piper_speech("The library keeps the caller's time even when a packet is lost.")  # 16 kHz
    encoder = OpusEncoder(16_000, 1, 20_000, 5, "voip")  # RTP timestamps stay in 48 kHz units
    step = 640 * 2  # 40 ms at 16 kHz
    pcm += bytes(-len(pcm) % step)
    packets = [encoder.encode(pcm[i : i + step]) for i in range(0, len(pcm), step)]
    heard: list[bytes] = []
    tap = DirectOpusInput(heard.append)
    jitter = AudioJitter(hold=2)
    order = list(range(len(packets)))
    order.remove(7)  # lost
    order[10], order[11] = order[11], order[10]  # swapped
    for seq in order:
        tap.receive(jitter.push(seq, seq * 1920, packets[seq]))
    for seq in range(len(packets), len(packets) + 3):  # the stream goes on (silence), flushing the hold
        tap.receive(jitter.push(seq, seq * 1920, encoder.encode(bytes(step))))
    assert jitter.lost == 1 and jitter.late == 0 and tap.errors == 0
    assert tap.concealed_samples == 640
    assert sum(len(p) for p in heard) == (len(packets) + 3) * step  # no time lost, none added


class FakeRtp:
    """The fields of aiortc's RtpPacket that the jitter tap reads."""

    def __init__(self, seq: int, payload: bytes, ssrc: int = 1, payload_type: int = 111) -> None:
        self.sequence_number, self.timestamp, self._data = seq, seq * 1920, payload
        self.ssrc, self.payload_type = ssrc, payload_type


def test_the_tap_restarts_on_a_new_ssrc_skips_empty_payloads_and_passes_other_codecs_on():
    encoder = OpusEncoder(16_000, 1, 20_000, 5, "voip")
    frame = encoder.encode(bytes(1280))
    heard: list[bytes] = []
    seen: list[int] = []

    class AiortcBuffer:
        capacity = 16

        def add(self, packet):
            seen.append(packet.sequence_number)
            return False, None

    tap = DirectOpusInput(heard.append)
    jitter = OpusJitterTap(AiortcBuffer(), tap, payload_type=111)
    for seq in (100, 101, 102):
        jitter.add(FakeRtp(seq, frame))
    jitter.add(FakeRtp(103, b""))  # padding only: in order, nothing decoded, nothing concealed
    jitter.add(FakeRtp(104, frame))
    assert len(heard) == 4 and tap.concealed_samples == 0
    # the sender restarts with a new SSRC and lower numbers: a new stream, not late packets to drop
    for seq in (50, 51):
        jitter.add(FakeRtp(seq, frame, ssrc=2))
    assert len(heard) == 6 and jitter.order.late == 0 and jitter.order.restarts == 1
    jitter.add(FakeRtp(7, b"\x00", payload_type=0))  # PCMU: aiortc's buffer and decoder, as before
    assert seen == [7] and len(heard) == 6
    assert jitter.capacity == 16


def test_a_lost_packet_is_rebuilt_from_the_next_packets_fec():
    """A browser adds in-band FEC once loss is reported: the packet after a lost one then carries a coarse copy of
    it, and the lost stretch comes back close to what was said (with concealment alone it fades and drifts)."""
    pcm = piper_speech("Please call Stella and ask her to bring these things with her from the store.")
    step = 1280  # 40 ms at 16 kHz, in bytes
    pcm += bytes(-len(pcm) % step)
    encoder = OpusEncoder(16_000, 1, 24_000, 9, "voip")
    encoder.use_fec(20)
    packets = [encoder.encode(pcm[i : i + step]) for i in range(0, len(pcm), step)]
    lost = set(range(10, len(packets) - 3, 7))
    source = np.frombuffer(pcm, "<i2").astype(float)
    lost_samples = np.concatenate([np.arange(s * 640, (s + 1) * 640) for s in lost])

    def lost_stretch_snr(fec: bool) -> float:
        heard: list[bytes] = []
        tap = DirectOpusInput(heard.append)
        if not fec:
            tap.decoder.recover = lambda packet, samples: tap.decoder.conceal(samples)
        jitter = AudioJitter(hold=2)
        for seq, packet in enumerate(packets):
            if seq not in lost:
                tap.receive(jitter.push(seq, seq * 1920, packet))
        out = np.frombuffer(b"".join(heard), "<i2").astype(float)
        assert len(out) == len(source) and tap.concealed_samples == 640 * len(lost)
        best = -99.0
        for delay in range(0, 200, 8):  # the codec's delay (6.5 ms at 16 kHz)
            error = source[lost_samples] - out[np.minimum(lost_samples + delay, len(out) - 1)]
            best = max(best, 10 * np.log10((source[lost_samples] ** 2).sum() / (error**2).sum()))
        return best

    fec, plc = lost_stretch_snr(True), lost_stretch_snr(False)
    print(f"lost stretches: SNR {fec:.1f} dB with FEC, {plc:.1f} dB with concealment alone")
    assert fec >= 5 and fec >= plc + 4, (fec, plc)
