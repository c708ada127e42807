"""voice.llm end to end on the real offline models: a question spoken by Piper goes over a real WebSocket to the
real server (Whisper), reaches the OpenAI-compatible fake as the user message, and the model's streamed answer comes
back as Piper speech that Whisper understands."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.fake_openai import FakeOpenAI, text_reply
from tests.harness import Client, LiveServer
from tests.speech import Recorder, feed, piper_speech, silence, wer
from voice import create_app
from voice.llm import LLMAgent
from voice.local import PiperTTS, WhisperTranscriber
from voice.providers.base import TranscriberOptions

pytestmark = pytest.mark.asyncio

QUESTION = "what is the tallest mountain in the world"
ANSWER = "The tallest mountain in the world is Mount Everest. It is almost nine kilometers high."


class Guide(LLMAgent):
    model = "guide-model"
    instructions = "You are a geography guide."


async def stream_realtime(c: Client, pcm: bytes) -> float:
    """20 ms frames at the pace of a microphone; returns when the last frame was sent."""
    start = time.monotonic()
    for k, i in enumerate(range(0, len(pcm), 640)):
        await asyncio.sleep(max(0.0, start + k * 0.02 - time.monotonic()))
        await c.send(pcm[i : i + 640])
    return time.monotonic()


async def transcribe(stt: WhisperTranscriber, pcm: bytes) -> str:
    rec = Recorder()
    session = await stt.create_session(TranscriberOptions(on_event=rec))
    await feed(session, pcm + silence(1500))
    await rec.wait_for(lambda r: len(r.finals) >= 1, timeout=30)
    await session.close()
    return " ".join(f.text for f in rec.finals)


async def test_a_spoken_question_reaches_the_model_and_its_streamed_answer_is_heard(tmp_path):
    stt, tts = WhisperTranscriber(), PiperTTS(deterministic=True)
    async with FakeOpenAI() as fake:
        fake.queue(text_reply(ANSWER, delay=0.03))
        app = create_app({"guide": Guide.configured(base_url=fake.url)}, transcriber=stt, tts=tts,
                         db_path=str(tmp_path / "v.db"))
        async with LiveServer(app) as srv:
            c = await Client.connect(f"{srv.ws}/agents/guide/e2e")
            await c.start_call()
            voiced = piper_speech(QUESTION)
            last_voiced = await stream_realtime(c, silence(300) + voiced)
            tail = asyncio.create_task(stream_realtime(c, silence(6000)))
            end = await c.wait_for("transcript_end", timeout=30)
            metrics = await c.wait_for("metrics", timeout=15)
            await tail
            (request,) = fake.requests
            heard_question = request.messages[-1]
            assert heard_question["role"] == "user"
            assert wer(QUESTION, heard_question["content"]) <= 0.15, heard_question
            assert end["text"] == ANSWER
            audio = c.audio()
            assert len(audio) > 2 * 16000 * 2  # seconds of speech
            back = await transcribe(stt, audio)
            assert wer(ANSWER, back) <= 0.25, back
            first_audio = next(t for t, m in c.messages if isinstance(m, bytes))
            print(  # shown with -s: the latency from the last voiced frame
                f"e2e: last voiced frame → request at the model {1000 * (request.received_at - last_voiced):.0f} ms,"
                f" → first reply audio {1000 * (first_audio - last_voiced):.0f} ms;",
                {k: metrics[k] for k in ("stt_ms", "first_text_ms", "voice_to_voice_ms")},
            )
            await c.close()
