"""Smart Turn v3.2 (the ONNX end-of-turn model shipped in the ``pipecat-ai`` wheel) as a component for us: inference
time on this CPU, and how well its "complete" probability separates the ends of utterances from the incomplete
points (hesitations after a function word or filler, mid-clause pauses) of the turn-taking speech set.

The model takes 8 s of 16 kHz audio (the last 8 s of the turn; shorter turns are zero-padded in front) as 80 x 800
Whisper-style log-mel features and returns P(complete). The features are computed here with numpy only (no
``transformers``): waveform normalized to zero mean and unit variance, 25 ms periodic-Hann frames every 10 ms
(centred, reflect-padded), power spectrum, 80 Slaney mel bands up to 8 kHz, log10, floor at max - 8, (x + 4) / 4,
last frame dropped: what Pipecat 1.14 feeds it (checked equal to Pipecat's own extraction, max difference 0.0).
Each point is scored as Pipecat would at its VAD stop: the audio from 0.5 s before the utterance to 200 ms after the
point. ``--floor-dbfs`` scores everything a second time with a white-noise floor added instead of digital silence.

    HF_HUB_OFFLINE=1 python bench/smart_turn_eval.py --floor-dbfs -60 --model \\
        /work/venvs/pipecat/lib/python3.11/site-packages/pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RATE = 16_000
WINDOW = 8 * RATE
N_FFT, HOP, N_MELS = 400, 160, 80
PRE_SPEECH = RATE // 2  # Pipecat's pre_speech_ms
AFTER = RATE // 5  # the VAD's 200 ms stop_secs


def _mel_filterbank() -> np.ndarray:
    """(80, 201) triangular filters on the Slaney mel scale, area-normalized (librosa's ``norm='slaney'``)."""
    log_step = np.log(6.4) / 27

    def to_mel(hz: np.ndarray) -> np.ndarray:
        return np.where(hz >= 1000, 15 + np.log(np.maximum(hz, 1e-10) / 1000) / log_step, 3 * hz / 200)

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel >= 15, 1000 * np.exp((mel - 15) * log_step), 200 * mel / 3)

    edges = to_hz(np.linspace(to_mel(np.array(0.0)), to_mel(np.array(RATE / 2)), N_MELS + 2))
    bins = np.linspace(0, RATE / 2, N_FFT // 2 + 1)
    rising = (bins[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    falling = (edges[2:, None] - bins[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    return np.maximum(0, np.minimum(rising, falling)) * (2 / (edges[2:] - edges[:-2]))[:, None]


_FILTERS = _mel_filterbank()
_HANN = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(80, 800) float32 features of the last 8 s of ``audio`` (float in [-1, 1], 16 kHz), zero-padded in front."""
    x = audio[-WINDOW:].astype(np.float32)
    x = np.concatenate([np.zeros(WINDOW - x.size, np.float32), x])
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    frames = sliding_window_view(np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect"), N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=-1)) ** 2
    spec = np.log10(np.maximum(1e-10, _FILTERS @ power.T))[:, :-1]
    return ((np.maximum(spec, spec.max() - 8.0) + 4.0) / 4.0).astype(np.float32)


class SmartTurn:
    """The ONNX model on one thread, as Pipecat runs it."""

    def __init__(self, path: str) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = so.intra_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, sess_options=so)
        self.feature_ms: list[float] = []
        self.model_ms: list[float] = []

    def __call__(self, pcm: bytes) -> float:
        """P(complete) for the turn audio ``pcm`` (16 kHz int16)."""
        t0 = time.perf_counter()
        features = log_mel(np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0)[None]
        t1 = time.perf_counter()
        p = float(self.session.run(None, {"input_features": features})[0].reshape(-1)[0])
        self.feature_ms.append((t1 - t0) * 1000)
        self.model_ms.append((time.perf_counter() - t1) * 1000)
        return p


def points(case) -> list[dict]:
    """The scored points of a stream case: each pause (incomplete) and each utterance end (complete)."""
    out = []
    for utt in case.utterances:
        start = max(0, utt.start - PRE_SPEECH)
        for pause in utt.pauses:
            out.append({"at": pause.start, "start": start, "complete": False, "what": pause.kind})
        out.append({"at": utt.voiced_end, "start": start, "complete": True, "what": f"end of {case.kind}"})
    return out


def auc(pos: list[float], neg: list[float]) -> float | None:
    """P(a random positive scores above a random negative), ties counting half."""
    if not pos or not neg:
        return None
    p, n = np.array(pos)[:, None], np.array(neg)[None, :]
    return round(float(((p > n) + 0.5 * (p == n)).mean()), 3)


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def with_floor(pcm: bytes, dbfs: float | None, seed: int) -> bytes:
    """``pcm`` with white noise at ``dbfs`` added (a room's noise floor instead of digital silence); None: as is."""
    if dbfs is None:
        return pcm
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    x += np.random.default_rng(seed).standard_normal(x.size) * 32768 * 10 ** (dbfs / 20)
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def evaluate(model: SmartTurn, split: str, floor_dbfs: float | None = None) -> dict:
    from tests.speech_set import Case, cases

    scored = []
    for n, case in enumerate(cases(split)):
        if isinstance(case, Case):
            padded = with_floor(case.pcm + bytes(2 * AFTER), floor_dbfs, n)
            for pt in points(case):
                p = model(padded[2 * pt["start"] : 2 * (pt["at"] + AFTER)])
                scored.append({"id": case.id, "voice": case.voice, **pt, "p": round(p, 4)})
        elif case.kind != "noise":
            p = model(with_floor(bytes(2 * PRE_SPEECH) + case.injection + bytes(2 * AFTER), floor_dbfs, n))
            scored.append({"id": case.id, "voice": case.voice, "what": case.kind, "complete": None, "p": round(p, 4)})
    ends = [s["p"] for s in scored if s["complete"]]
    summary: dict = {"ends": len(ends), "ends_p_complete_over_0.5": round(float(np.mean(np.array(ends) > 0.5)), 3)}
    for what in ("function_word", "filler", "midpause"):
        neg = [s["p"] for s in scored if s["what"] == what]
        summary[what] = {"points": len(neg), "p_complete_under_0.5": round(float(np.mean(np.array(neg) < 0.5)), 3),
                         "median_p": pct(neg, 50), "auc_vs_ends": auc(ends, neg)}
    incomplete = [s["p"] for s in scored if s["complete"] is False]
    summary["all_pauses_auc_vs_ends"] = auc(ends, incomplete)
    summary["ends_median_p"] = pct(ends, 50)
    for kind in ("backchannel", "interruption"):
        inj = [s["p"] for s in scored if s["what"] == kind]
        summary[f"{kind}_alone_p_complete_over_0.5"] = round(float(np.mean(np.array(inj) > 0.5)), 3)
    by_voice = {}
    for voice in sorted({s["voice"] for s in scored if s["complete"] is not None}):
        e = [s["p"] for s in scored if s["voice"] == voice and s["complete"]]
        n = [s["p"] for s in scored if s["voice"] == voice and s["complete"] is False]
        by_voice[voice] = auc(e, n)
    summary["auc_by_voice"] = by_voice
    return {"summary": summary, "points": scored}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="smart-turn-v3.2-cpu.onnx from the pipecat-ai wheel")
    ap.add_argument("--floor-dbfs", type=float, default=None,
                    help="also score with white noise at this level added (e.g. -60), not only digital silence")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "smart_turn_eval.json"))
    a = ap.parse_args()
    model = SmartTurn(a.model)
    silence = bytes(2 * RATE)
    for _ in range(5):  # warm up
        model(silence)
    model.feature_ms.clear()
    model.model_ms.clear()
    report: dict = {"model": os.path.basename(a.model), "threads": 1, "splits": {}}
    for split in ("dev", "holdout"):
        report["splits"][split] = evaluate(model, split)
        print(split, json.dumps(report["splits"][split]["summary"], indent=1), flush=True)
    if a.floor_dbfs is not None:
        report["with_noise_floor"] = {"dbfs": a.floor_dbfs, "splits": {}}
        for split in ("dev", "holdout"):
            summary = evaluate(model, split, a.floor_dbfs)["summary"]
            report["with_noise_floor"]["splits"][split] = summary
            print(split, f"noise floor {a.floor_dbfs} dBFS", json.dumps(summary, indent=1), flush=True)
    total = [f + m for f, m in zip(model.feature_ms, model.model_ms, strict=True)]
    report["timing_ms"] = {
        "calls": len(total), "features_p50": pct(model.feature_ms, 50), "features_p90": pct(model.feature_ms, 90),
        "model_p50": pct(model.model_ms, 50), "model_p90": pct(model.model_ms, 90),
        "total_p50": pct(total, 50), "total_p90": pct(total, 90),
    }
    report["load_avg"] = os.getloadavg()[0]
    print(json.dumps(report["timing_ms"]))
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
