"""Which synthesized voices Whisper tiny.en understands well enough for the turn-taking speech set.

For every candidate voice in ``tests/speech_voices.py``: word error rate of Whisper tiny.en on 20 complete
sentences, and whether the pause the set inserts lands between the right words (the audio before the pause,
transcribed alone, against the words before the mark, on 8 marked sentences). Voices above 0.25 WER are dropped.

    HF_HUB_OFFLINE=1 python bench/speech_set_voices.py     # -> bench/results/speech_set_voices.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests import speech_set_text as text
from tests.speech import wer
from tests.speech_set import plain, render, silence
from tests.speech_voices import CANDIDATES
from tests.whisper_check import transcribe

SENTENCES = text.COMPLETE["dev"][:10] + text.COMPLETE["holdout"][:10]
MARKED = text.MIDPAUSE["dev"][:2] + text.MIDPAUSE["holdout"][:2] + [
    s for s, kind in text.HESITATION["dev"][:2] + text.HESITATION["holdout"][:2] if kind == "function_word"
]


def measure(name: str) -> dict:
    voice = CANDIDATES[name]
    heard = [transcribe(silence(300) + voice.synthesize(s) + silence(300)) for s in SENTENCES]
    prefixes, prefix_heard = [], []
    for marked in MARKED:
        clip = render(voice, marked, 800)
        start = clip.pauses[0][0]
        prefixes.append(plain(marked.split("|")[0]))
        prefix_heard.append(transcribe(silence(300) + clip.pcm[: 2 * start] + silence(300)))
    return {
        "voice": name, "engine": voice.engine, "params": dict(voice.params),
        "wer": round(wer(SENTENCES, heard), 3),
        "prefix_wer": round(wer(prefixes, prefix_heard), 3),
        "worst": sorted(((round(wer(s, h), 2), s, h) for s, h in zip(SENTENCES, heard, strict=True)))[-3:],
        "prefixes_heard": prefix_heard,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--voices", nargs="*", default=list(CANDIDATES))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "speech_set_voices.json"))
    a = ap.parse_args()
    results = []
    for name in a.voices:
        r = measure(name)
        results.append(r)
        print(f"{name:18s} wer {r['wer']:.3f}  prefix wer {r['prefix_wer']:.3f}  kept {r['wer'] <= 0.25}", flush=True)
    with open(a.out, "w") as f:
        json.dump({"sentences": len(SENTENCES), "marked": len(MARKED), "threshold": 0.25, "voices": results}, f,
                  indent=1)


if __name__ == "__main__":
    main()
