"""Audio conversions: WAV reading for `voice call`, mono mixing, streaming resampling without seams."""

import numpy as np

from voice.audio import StreamResampler, resample, to_mono_int16
from voice.cli import read_wav


def tone(freq: float, seconds: float, rate: int, amp: float = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype("<i2")


def test_stereo_44k_wav_becomes_16k_mono_with_the_same_tone(tmp_path):
    left = tone(440, 1.0, 44100)
    stereo = np.stack([left, left], axis=1).astype("<i2")
    path = tmp_path / "s.wav"
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(stereo.tobytes())
    pcm = np.frombuffer(read_wav(str(path)), dtype="<i2")
    assert abs(len(pcm) - 16000) < 20
    expected = tone(440, 1.0, 16000)
    n = min(len(pcm), len(expected)) - 200
    corr = np.corrcoef(pcm[100:n], expected[100:n])[0, 1]
    assert corr > 0.99
    assert 7000 < np.abs(pcm[100:n]).max() < 8500  # int input is not mistaken for float


def test_mono_mix_of_ints_and_floats():
    ints = np.array([[1000, 3000], [-2000, -4000]], dtype="<i2")
    assert to_mono_int16(ints).tolist() == [2000, -3000]
    floats = np.array([0.5, -1.5], dtype=np.float32)
    assert to_mono_int16(floats).tolist() == [16384, -32767]


def test_streaming_resampler_has_no_seams_at_chunk_borders():
    x = tone(300, 1.0, 22050)
    whole = np.frombuffer(resample(x.tobytes(), 22050, 16000), dtype="<i2").astype(int)
    rs = StreamResampler(22050, 16000)
    parts = [rs.process(x[i : i + 441].tobytes()) for i in range(0, len(x), 441)]
    parts.append(rs.process(b"", last=True))
    chunked = np.frombuffer(b"".join(parts), dtype="<i2").astype(int)
    assert abs(len(chunked) - len(whole)) <= 2
    # sample-to-sample steps never jump more than a 300 Hz tone at 16 kHz can (no clicks at 20 ms borders)
    max_step = 2 * np.pi * 300 / 16000 * 8000 * 1.1
    assert np.abs(np.diff(chunked[50:-50])).max() < max_step
