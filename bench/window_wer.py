"""Does a final's shorter encoder window change what Whisper hears? 48 Piper-spoken sentences (one word to
twenty), clean or with white noise (``--conditions``), each cut at several offsets (``--offsets``: extra pre-roll
in ms, as the VAD's 32 ms chunks fall differently on every turn), transcribed as finals with the encoder window
``voice.local.whisper_request.window_seconds`` gives for each minimum (``--floors``; 30 is the full window Whisper
was trained on, main's final). Prints WER per condition and floor, how many clips came out better or worse than
with 30 s, and the CPU per clip.

    HF_HUB_OFFLINE=1 python bench/window_wer.py --conditions clean "noise -35" "noise -28" --floors 30 20 15 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.speech import noise, normalize, piper_speech, silence, wer
from voice.local import whisper_request
from voice.local.whisper_model import Request, _load_runtime, resolve_model_path

SENTENCES = [
    "what is the weather like in paris today", "can you book a table for two at eight",
    "how far is the nearest train station", "please remind me to call my mother tomorrow",
    "what time does the museum open on sunday", "play some relaxing music in the living room",
    "how many grams are in a pound", "turn off the lights in the kitchen", "what is the capital of australia",
    "send a message to john saying i am running late", "how do i make a cup of green tea",
    "set a timer for fifteen minutes", "What time does the pharmacy close on Sunday evening?",
    "Could you please tell me how to get from the central station to the old museum near the river?",
    "I would like to order a large pizza with mushrooms and extra cheese.",
    "Is the museum open on public holidays?", "Thank you very much for your help.",
    "Please remind me to call my sister after lunch.", "How far is the nearest train station from here?",
    "Can you recommend a good book?", "Yes.", "No, thanks.", "Hello there.", "Stop.",
    "What is the difference between a crocodile and an alligator?",
    "My flight leaves at seven in the morning, so I need a taxi by five thirty at the latest.",
    "Add milk, eggs, bread and two bottles of orange juice to my shopping list.",
    "Who wrote the novel pride and prejudice?",
    "I think the meeting was moved to Thursday afternoon because the manager is travelling.",
    "How long should I boil an egg if I want the yolk to stay soft?",
    "Can you explain how a rainbow forms after the rain?", "Tell me a joke about computers.",
    "What's on my calendar for next Monday?", "The quick brown fox jumps over the lazy dog.",
    "Remind me to water the plants every Saturday morning at nine.",
    "Why is the sky blue during the day and red at sunset?", "Translate good morning into French.",
    "How much does a ticket to London cost?", "Could you read me the latest news headlines please?",
    "I lost my keys somewhere between the car park and the office, what should I do?", "Open the garage door.",
    "What is twelve times fourteen?", "Where did I park my car yesterday evening?",
    "Call the dentist and cancel my appointment.", "Is it going to snow in the mountains this weekend?",
    "My daughter wants to learn the piano, where can we find a good teacher nearby?",
    "Turn the volume down a little.", "What's the best way to get rid of a headache without medicine?",
]


def mix(a: bytes, b: bytes) -> bytes:
    x = np.frombuffer(a, "<i2").astype(np.int32) + np.frombuffer(b, "<i2").astype(np.int32)
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()


def clips(condition: str, offset_ms: int) -> list[bytes]:
    """What a final sees: 300 ms of pre-roll (+ ``offset_ms``), the sentence, ~100 ms of the silence after it."""
    out = []
    for i, text in enumerate(SENTENCES):
        pcm = silence(300 + offset_ms) + piper_speech(text) + silence(100)
        if condition != "clean":
            pcm = mix(pcm, noise(len(pcm) // 32, dbfs=float(condition.split()[1]), seed=i + 1000 * offset_ms))
        out.append(pcm)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conditions", nargs="+", default=["clean", "noise -35", "noise -28"])
    ap.add_argument("--offsets", type=int, nargs="+", default=[0, 11, 23])
    ap.add_argument("--floors", type=int, nargs="+", default=[30, 10])
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "window_wer.jsonl"))
    a = ap.parse_args()
    runtime = _load_runtime(resolve_model_path())
    floor = whisper_request.FINAL_MIN_WINDOW_S
    rows = []
    try:
        for condition in a.conditions:
            audio = [pcm for offset in a.offsets for pcm in clips(condition, offset)]
            refs = SENTENCES * len(a.offsets)
            texts: dict[int, list[str]] = {}
            for f in a.floors:
                whisper_request.FINAL_MIN_WINDOW_S = f
                cpu = time.process_time()
                texts[f] = [runtime.transcribe_batch([Request(pcm, "en")])[0].text for pcm in audio]
                cpu = time.process_time() - cpu
                base = texts[a.floors[0]]
                errors = [wer(r, t) for r, t in zip(refs, texts[f], strict=True)]
                base_errors = [wer(r, t) for r, t in zip(refs, base, strict=True)]
                rows.append({
                    "condition": condition, "floor_s": f, "clips": len(audio), "wer": round(wer(refs, texts[f]), 4),
                    "differ": sum(normalize(x) != normalize(y) for x, y in zip(texts[f], base, strict=True)),
                    "better": sum(e < b for e, b in zip(errors, base_errors, strict=True)),
                    "worse": sum(e > b for e, b in zip(errors, base_errors, strict=True)),
                    "vs_floor": a.floors[0], "cpu_ms_per_clip": round(1000 * cpu / len(audio)),
                })
                print(json.dumps(rows[-1]), flush=True)
    finally:
        whisper_request.FINAL_MIN_WINDOW_S = floor
    with open(a.out, "a") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


if __name__ == "__main__":
    main()
