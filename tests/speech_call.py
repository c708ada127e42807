"""Speech-set cases played to a voice server in real time over the WebSocket, as a microphone would: the client
side of bench/turns.py and of the real-model turn-taking tests."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import websockets

from tests.speech import wer
from tests.speech_set import FRAME, Case, InjectedCase
from tests.speech_voices import SILENCE_DBFS, block_dbfs

FRAME_BYTES = FRAME * 2
TAIL_S = 3.0  # silence streamed after the last utterance before the case is judged


class Stream:
    """One call: a socket, a reader recording every message with its arrival time, a real-time frame clock."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.events: list[tuple[float, str, dict]] = []
        self.first_audio: list[float] = []  # arrival of the first audio byte after each silence in the reply stream
        self._last_audio = 0.0
        self._reader = asyncio.create_task(self._read())
        self.k = 0
        self.t0 = 0.0

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                now = time.monotonic()
                if isinstance(raw, bytes):
                    if now - self._last_audio > 0.5:
                        self.first_audio.append(now)
                    self._last_audio = now
                    continue
                m = json.loads(raw)
                self.events.append((now, m.get("type", ""), m))
        except websockets.ConnectionClosed:
            pass

    async def send_frames(self, pcm: bytes) -> list[float]:
        """Stream ``pcm`` in 20 ms frames paced by the clock; returns each frame's send time."""
        times = []
        if self.t0 == 0.0:
            self.t0 = time.monotonic()
        for i in range(0, len(pcm), FRAME_BYTES):
            await asyncio.sleep(max(0.0, self.t0 + self.k * 0.02 - time.monotonic()))
            await self.ws.send(pcm[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0"))
            times.append(time.monotonic())
            self.k += 1
        return times

    def of(self, kind: str, after: float = 0.0) -> list[tuple[float, dict]]:
        return [(t, m) for t, k, m in self.events if k == kind and t >= after]

    def users(self) -> list[tuple[float, str]]:
        return [(t, m["text"]) for t, m in self.of("transcript") if m.get("role") == "user"]

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


async def open_call(url: str) -> Stream:
    ws = await websockets.connect(url, max_size=None)
    s = Stream(ws)
    await ws.send(json.dumps({"type": "start_call"}))
    for _ in range(500):
        if any(m.get("status") == "listening" for _, m in s.of("status")):
            break
        await asyncio.sleep(0.01)
    return s


def silence_s(seconds: float) -> bytes:
    return bytes(int(seconds * 50) * FRAME_BYTES)


async def run_stream_case(base: str, case: Case) -> dict:
    s = await open_call(f"{base}/agents/echo/{case.id}-{time.monotonic_ns()}")
    sent = await s.send_frames(case.pcm)
    await s.send_frames(silence_s(TAIL_S + (2.5 if case.kind == "hesitation" else 0.0)))
    users = s.users()
    result: dict = {"id": case.id, "kind": case.kind, "voice": case.voice, "turns": len(users),
                    "expected_turns": len(case.expected_turns), "heard": [u for _, u in users]}
    result["wer"] = wer(" ".join(case.expected_turns), " ".join(u for _, u in users)) if users else 1.0
    ends = [sent[max(0, (u.voiced_end - 1) // FRAME)] for u in case.utterances]
    if case.kind == "complete" and s.first_audio:
        after = [t for t in s.first_audio if t > ends[-1]]
        if after:
            result["v2v_ms"] = 1000 * (after[0] - ends[-1])
        finals = [t for t, _ in users if t > ends[-1]]
        if finals:
            result["final_ms"] = 1000 * (finals[0] - ends[-1])
    await s.close()
    return result


async def run_injected_case(base: str, http: httpx.AsyncClient, case: InjectedCase) -> dict:
    instance = f"{case.id}-{time.monotonic_ns()}"
    s = await open_call(f"{base}/agents/echo/{instance}?long=1")
    await s.send_frames(case.question)
    while not s.first_audio and s.k < 50 * 15:  # the microphone stays open until the reply starts
        await s.send_frames(silence_s(0.02))
    result: dict = {"id": case.id, "kind": case.kind, "voice": case.voice, "injection": case.injection_text
                    or case.description, "expect_interrupt": case.expect_interrupt}
    if not s.first_audio:
        result["error"] = "no reply"
        await s.close()
        return result
    reply_at = s.first_audio[0]
    await s.send_frames(silence_s(max(0.0, reply_at + case.offset_s - time.monotonic())))
    sent = await s.send_frames(case.injection)
    levels = block_dbfs(case.injection, FRAME)
    voice_at = sent[next((i for i, level in enumerate(levels) if level > SILENCE_DBFS), 0)]
    await s.send_frames(silence_s(TAIL_S))
    page = f"{base.replace('ws', 'http', 1)}/agents/echo/{instance}/messages"
    for _ in range(60):  # the microphone stays open until the reply has been heard to its end (then it is stored)
        if any(m["role"] == "assistant" for m in (await http.get(page)).json()["messages"]):
            break
        await s.send_frames(silence_s(0.5))
    interrupts = s.of("playback_interrupt", reply_at)
    pauses = s.of("playback_pause", reply_at)
    result["interrupted"] = bool(interrupts)
    result["paused"] = bool(pauses)
    result["resumed"] = bool(s.of("playback_resume", reply_at))
    if interrupts:
        result["interrupt_ms"] = 1000 * (interrupts[0][0] - voice_at)
    if pauses:
        result["pause_ms"] = 1000 * (pauses[0][0] - voice_at)
    result["answered"] = sum(1 for t, _ in s.users() if t > voice_at)
    result["heard"] = [(round(1000 * (t - voice_at)), m["text"]) for t, m in s.of("transcript_interim", voice_at)
                       if m["text"]] + [(round(1000 * (t - voice_at)), "final: " + u) for t, u in s.users()
                                        if t > voice_at]
    stored = (await http.get(page)).json()["messages"]
    await s.close()
    replies = [m for m in stored if m["role"] == "assistant"]
    result["stored_interrupted"] = bool(replies) and replies[0]["interrupted"]
    return result
