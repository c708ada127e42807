"""Pipecat 1.14's own turn-taking components on the turn-taking speech set (runs in a separate venv with Pipecat).

Drives, in stream order with 20 ms frames of 16 kHz PCM, what Pipecat's ``LLMUserAggregator`` does with its
defaults: ``SileroVADAnalyzer`` with the default ``VADParams`` (confidence 0.7, start 0.2 s, stop 0.2 s, min volume
0.6) wrapped as ``VADController`` does (events only on QUIET<->SPEAKING), and the default stop strategy
``TurnAnalyzerUserTurnStopStrategy(LocalSmartTurnAnalyzerV3())`` (Smart Turn v3.2, 1 thread): every audio frame
goes to ``append_audio`` (COMPLETE there = 3 s of silence after VAD stop, its ``stop_secs`` fallback), and at each
VAD stop the analyzer predicts on the buffered turn (``_process_speech_segment``, the call ``analyze_end_of_turn``
runs in its thread). For interruptions it compares the default start strategy (``VADUserTurnStartStrategy``: any VAD
start while the bot speaks interrupts) with ``MinWordsUserTurnStartStrategy(min_words=N)`` given the words of the
injection, i.e. a perfect transcript.

Approximations (stated in the results): audio time is simulated, so Smart Turn's buffer timestamps use a simulated
clock (its module's ``time.monotonic``) and the decision time is the audio position of the deciding frame plus the
measured inference time; the STT is assumed perfect and instant (Pipecat also waits for the final transcript,
which adds the STT's latency); the microphone hears nothing while the bot speaks (echo cancelled).

    python -m tests.speech_set --split dev --out /tmp/speech-set/dev          # project venv: export the cases
    python -m tests.speech_set --split holdout --out /tmp/speech-set/holdout
    flock /tmp/cpu.lock /work/venvs/pipecat/bin/python bench/peers/pipecat_turns.py --cases /tmp/speech-set
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import wave
from pathlib import Path

from loguru import logger
from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState
from pipecat.audio.turn.smart_turn import base_smart_turn
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADState

RATE = 16_000
FRAME = 320  # 20 ms
ROOT = Path(__file__).resolve().parents[2]
MIN_WORDS = (2, 3)


class _SimClock:
    """Stands in for the ``time`` module inside ``base_smart_turn``: monotonic() is the audio position."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    @staticmethod
    def perf_counter() -> float:
        return time.perf_counter()


CLOCK = _SimClock()
base_smart_turn.time = CLOCK  # type: ignore[assignment]


class PipecatUser:
    """One caller's audio through Pipecat's VAD and Smart Turn stop strategy, frame by frame."""

    def __init__(self, analyzer: LocalSmartTurnAnalyzerV3) -> None:
        self.vad = SileroVADAnalyzer(sample_rate=RATE)
        self.vad.set_sample_rate(RATE)
        self.turn = analyzer
        self.turn.clear()
        self.state = VADState.QUIET
        self.speaking = False  # the stop strategy's _vad_user_speaking
        self.samples = 0
        self.vad_starts: list[int] = []  # sample positions (end of the frame that started it)
        self.turn_ends: list[dict] = []  # {"at": samples, "by": "smart_turn"|"stop_secs", "p": prob}
        self.predictions: list[dict] = []
        self.inference_ms: list[float] = []

    def feed(self, pcm: bytes) -> None:
        """Feed ``pcm`` in 20 ms frames."""
        for i in range(0, len(pcm) - FRAME * 2 + 1, FRAME * 2):
            self._frame(pcm[i : i + FRAME * 2])

    def _frame(self, frame: bytes) -> None:
        self.samples += FRAME
        CLOCK.now = 1000.0 + self.samples / RATE
        new = self.vad._run_analyzer(frame)
        event = None
        if new != self.state and new in (VADState.SPEAKING, VADState.QUIET):
            event, self.state = new, new
        # The aggregator queues the VAD frames it broadcasts, so the audio frame reaches the strategy first.
        if self.turn.append_audio(frame, self.speaking) == EndOfTurnState.COMPLETE:
            self.turn_ends.append({"at": self.samples, "by": "stop_secs", "p": None, "ms": 0.0})
        if event == VADState.SPEAKING:
            self.vad_starts.append(self.samples)
            self.turn.update_vad_start_secs(self.vad.params.start_secs)
            self.speaking = True
        elif event == VADState.QUIET:
            self.speaking = False
            start = time.perf_counter()
            state, metrics = self.turn._process_speech_segment(self.turn._audio_buffer)
            ms = (time.perf_counter() - start) * 1000
            if metrics is not None:
                self.inference_ms.append(ms)
                self.predictions.append({"at": self.samples, "p": round(metrics.probability, 3)})
            if state == EndOfTurnState.COMPLETE:
                self.turn._clear(state)
                p = metrics.probability if metrics else None
                self.turn_ends.append({"at": self.samples, "by": "smart_turn", "p": p, "ms": ms})


def read_wav(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        return w.readframes(w.getnframes())


def run_stream(case: dict, pcm: bytes, analyzer: LocalSmartTurnAnalyzerV3) -> dict:
    user = PipecatUser(analyzer)
    user.feed(pcm + bytes(2 * RATE * 4))  # 4 s more silence: past the 3 s stop_secs fallback
    utts = case["utterances"]
    turns = []
    for end in user.turn_ends:
        utt = max((u for u in utts if u["start"] < end["at"]), key=lambda u: u["start"])
        pause = next((p for u in utts for p in u["pauses"] if p["start"] < end["at"] <= p["end"] + 6400), None)
        decided = end["at"] / RATE * 1000 + end["ms"]
        turns.append({
            "by": end["by"], "p": end["p"], "at_pause": pause is not None,
            "delay_ms": round(decided - utt["voiced_end"] / RATE * 1000) if pause is None else None,
        })
    return {
        "id": case["id"], "kind": case["kind"], "voice": case["voice"], "expected": len(case["expected_turns"]),
        "turns": len(turns), "ends": turns, "predictions": user.predictions, "inference_ms": user.inference_ms,
    }


def run_injected(case: dict, question: bytes, injection: bytes, analyzer: LocalSmartTurnAnalyzerV3) -> dict:
    user = PipecatUser(analyzer)
    user.feed(question + bytes(2 * RATE * 4))
    answered = len(user.turn_ends)
    user.feed(bytes(2 * int(RATE * case["offset_s"]) // (FRAME * 2) * FRAME * 2))  # the bot talks, mic is quiet
    injected_at = user.samples
    user.feed(injection + bytes(2 * RATE * 4))
    starts = [s for s in user.vad_starts if s > injected_at]
    words = len(case["injection_text"].split())
    return {
        "id": case["id"], "kind": case["kind"], "voice": case["voice"], "injection": case["description"],
        "question_answered": answered >= 1,
        "interrupts_default": bool(starts),
        "interrupt_after_ms": round((starts[0] - injected_at) / RATE * 1000) if starts else None,
        "turn_after_injection": len(user.turn_ends) > answered,
        **{f"interrupts_min_words_{n}": bool(starts) and words >= n for n in MIN_WORDS},
        "expect_interrupt": case["expect_interrupt"], "inference_ms": user.inference_ms,
    }


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return round(values[lo] + (values[hi] - values[lo]) * (k - lo), 1)


def summarize(results: list[dict]) -> dict:
    out: dict = {}
    for kind in sorted({r["kind"] for r in results}):
        rs = [r for r in results if r["kind"] == kind]
        s: dict = {"cases": len(rs)}
        if "turns" in rs[0]:
            s["right_turn_count"] = round(statistics.mean(r["turns"] == r["expected"] for r in rs), 3)
            s["ended_at_pause"] = round(statistics.mean(any(e["at_pause"] for e in r["ends"]) for r in rs), 3)
            delays = [e["delay_ms"] for r in rs for e in r["ends"] if e["delay_ms"] is not None]
            by = [e["by"] for r in rs for e in r["ends"] if e["delay_ms"] is not None]
            s["delay_p50_ms"], s["delay_p90_ms"] = pct(delays, 50), pct(delays, 90)
            s["ended_by_stop_secs"] = round(by.count("stop_secs") / len(by), 3) if by else None
        else:
            s["interrupts_default"] = round(statistics.mean(r["interrupts_default"] for r in rs), 3)
            for n in MIN_WORDS:
                s[f"interrupts_min_words_{n}"] = round(statistics.mean(r[f"interrupts_min_words_{n}"] for r in rs), 3)
            s["turn_after_injection"] = round(statistics.mean(r["turn_after_injection"] for r in rs), 3)
            lat = [r["interrupt_after_ms"] for r in rs if r["interrupt_after_ms"] is not None]
            s["interrupt_after_p50_ms"] = pct(lat, 50)
        out[kind] = s
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=Path, required=True, help="directory with dev/ and holdout/ from tests.speech_set")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pipecat_turns.json")
    a = ap.parse_args()
    logger.remove()
    analyzer = LocalSmartTurnAnalyzerV3(sample_rate=RATE)
    analyzer.set_sample_rate(RATE)
    report: dict = {"pipecat": "1.14.0", "splits": {}}
    inference: list[float] = []
    for split in ("dev", "holdout"):
        folder = a.cases / split
        results = []
        for case in json.loads((folder / "manifest.json").read_text()):
            files = {k: read_wav(folder / v) for k, v in case["files"].items()}
            if "stream" in files:
                results.append(run_stream(case, files["stream"], analyzer))
            else:
                results.append(run_injected(case, files["question"], files["injection"], analyzer))
            inference += results[-1].pop("inference_ms")
        report["splits"][split] = {"summary": summarize(results), "cases": results}
        print(split, json.dumps(report["splits"][split]["summary"], indent=1), flush=True)
    report["smart_turn_inference_ms"] = {"p50": pct(inference, 50), "p90": pct(inference, 90), "n": len(inference)}
    report["load_avg"] = os.getloadavg()[0]
    report["approximations"] = [
        "audio time simulated; Smart Turn's buffer clock follows the audio position",
        "decision time = audio position of the deciding frame + measured Smart Turn inference time",
        "STT assumed perfect and instant (Pipecat also waits for the final transcript)",
        "MinWordsUserTurnStartStrategy counts the injection's true words; microphone silent while the bot speaks",
    ]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["smart_turn_inference_ms"]))


if __name__ == "__main__":
    main()
