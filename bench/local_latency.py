"""End-of-speech -> Final latency of the offline WhisperTranscriber, streamed in real time.

Each question is spoken by the (deterministic) Piper voice, wrapped in silence and fed to a fresh session in
20 ms frames paced by the clock, as a microphone would deliver it. Latency = time of the ``Final`` event minus
the moment the last voiced sample of the question was fed (the speech audio's end, found by energy).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/local_latency.py            # all modes, writes bench/results/
    HF_HUB_OFFLINE=1 .venv/bin/python bench/local_latency.py --modes early --n 10

Modes: ``early`` (the default provider: transcription starts as the silence begins, 450 ms window),
``naive-600`` (wait out a 600 ms silence, then transcribe: what a simple server does), ``naive-450`` (same
window as ``early`` without the early start, to isolate the trick).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from speech import Recorder, feed, piper_speech, silence, wer  # noqa: E402

from voice.local import PiperTTS, WhisperTranscriber  # noqa: E402
from voice.providers.base import TranscriberOptions  # noqa: E402

QUESTIONS = [
    "What time does the pharmacy close on Sunday evening?",
    "How far is the nearest train station from here?",
    "Please remind me to call my sister after lunch.",
    "Why is the sky blue?",
    "Do you have any vegetarian options on the menu?",
    "Could you tell me the balance of my checking account?",
    "What is the weather going to be like tomorrow morning?",
    "Can I change my flight to an earlier one?",
    "Is the museum open on public holidays?",
    "How do I reset my password if I forgot my email?",
    "Which platform does the express train leave from?",
    "Turn off the lights in the kitchen and lock the front door.",
    "Where can I find a good coffee shop nearby?",
    "How long does it take to boil an egg?",
    "Tell me a short story about a dragon who learns to cook.",
    "What are the symptoms of the common cold?",
    "Can you recommend a book for a long flight?",
    "My internet connection keeps dropping every few minutes.",
    "Who won the football match last night?",
    "Should I bring an umbrella today?",
]

MODES = {
    "early": {},  # the defaults
    "naive-600": {"end_silence_ms": 600, "early_transcribe_ms": None},
    "naive-450": {"end_silence_ms": 450, "early_transcribe_ms": None},
}
LEAD_MS, TAIL_MS = 600, 1500


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process) so far."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / tick, sum(os.times()[:4])


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def run_mode(name: str, overrides: dict, questions: list[str]) -> dict:
    stt = WhisperTranscriber(**overrides)
    await stt.warm_up()
    (busy0, own0), wall0 = cpu_seconds(), time.monotonic()
    latencies, onsets, hyps, interims = [], [], [], 0
    for text in questions:
        speech = piper_speech(text)  # trimmed: starts and ends with voice
        rec = Recorder()
        session = await stt.create_session(TranscriberOptions(on_event=rec))
        start = await feed(session, silence(LEAD_MS) + speech + silence(TAIL_MS), realtime=True)
        await rec.wait_for(lambda r: r.finals, timeout=5)
        await session.close()
        speech_start = start + LEAD_MS / 1000
        speech_end = speech_start + len(speech) / 2 / 16_000
        final_at = rec.time_of(lambda e: type(e).__name__ == "Final")
        started_at = rec.time_of(lambda e: type(e).__name__ == "SpeechStarted")
        hyps.append(" ".join(f.text for f in rec.finals))
        interims += len(rec.interims)
        if final_at is not None:
            latencies.append(final_at - speech_end)
        if started_at is not None:
            onsets.append(started_at - speech_start)
        print(f"  [{name}] {1000 * (final_at - speech_end) if final_at else float('nan'):6.0f} ms  {hyps[-1]!r}")
    (busy1, own1), wall = cpu_seconds(), time.monotonic() - wall0
    return {
        "others": 100 * max(0.0, (busy1 - busy0) - (own1 - own0)) / wall,  # % of one core used by other processes
        "mode": name,
        "n": len(questions),
        "finals": len(latencies),
        "p50": 1000 * statistics.median(latencies),
        "p90": 1000 * percentile(latencies, 0.9),
        "max": 1000 * max(latencies),
        "wer": wer(questions, hyps),
        "onset": 1000 * statistics.median(onsets),
        "interims": interims / len(questions),
    }


async def model_call_ms(stt: WhisperTranscriber, seconds: float = 3.0, n: int = 5) -> float:
    """Median time of one full Whisper call right now: how busy the machine is (other processes) shows here."""
    runtime = await stt._ensure_loaded()
    pcm = piper_speech(QUESTIONS[0])[: int(seconds * 16_000) * 2]
    loop, times = asyncio.get_running_loop(), []
    for _ in range(n):
        t = time.perf_counter()
        await loop.run_in_executor(None, runtime.transcribe, pcm, "en", 1, None)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--n", type=int, default=len(QUESTIONS), help="number of questions (max 20)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "local_latency.md"))
    args = parser.parse_args()
    questions = QUESTIONS[: args.n]
    tts = PiperTTS(deterministic=True)
    await tts.warm_up()
    for q in questions:
        piper_speech(q)
    calibration = [await model_call_ms(WhisperTranscriber())]
    results = []
    for name in args.modes.split(","):
        results.append(await run_mode(name, MODES[name], questions))
    calibration.append(await model_call_ms(WhisperTranscriber()))
    rss = peak_rss_mb()
    load = os.getloadavg()
    command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/local_latency.py " + " ".join(sys.argv[1:])
    lines = [
        "# Offline STT latency: end of speech -> Final (WhisperTranscriber, tiny.en int8)",
        "",
        f"`{command.strip()}` — {len(questions)} Piper-spoken questions streamed in real time (20 ms frames), "
        f"{os.cpu_count()} CPU cores, load average {load[0]:.2f} at the end. One Whisper call (3 s clip, idle "
        f"otherwise) took {calibration[0]:.0f} ms before the run and {calibration[1]:.0f} ms after (~350 ms when "
        f"the machine is quiet). Peak RSS (VmHWM) with Whisper + Piper + Silero loaded: **{rss:.0f} MB**.",
        "",
        "| mode | finals | p50 ms | p90 ms | max ms | WER | SpeechStarted p50 ms | interims/turn | other procs' CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['mode']} | {r['finals']}/{r['n']} | {r['p50']:.0f} | {r['p90']:.0f} | {r['max']:.0f} "
            f"| {r['wer']:.3f} | {r['onset']:.0f} | {r['interims']:.1f} | {r['others']:.0f}% |"
        )
    lines += [
        "",
        "Latency is measured from the last voiced sample of the question (as fed, in real time) to the Final "
        "event; SpeechStarted from the first voiced sample. `early` = default settings (end_silence_ms=450, "
        "early_transcribe_ms=64); `naive-N` = wait N ms of silence, then transcribe. \"other procs' CPU\" is "
        "the CPU other processes on the machine used during the mode (% of one core, out of "
        f"{100 * (os.cpu_count() or 1)}%): the model is CPU-bound, so a busy machine shifts every number.",
        "",
    ]
    report = "\n".join(lines)
    print()
    print(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    print(f"written to {args.out}; ran {time.process_time():.0f} s CPU")


if __name__ == "__main__":
    asyncio.run(main())
