"""A deterministic, varied speech set for evaluating turn-taking: real synthesized speech with ground truth.

Seven kinds of case, in two splits (``dev`` for tuning, ``holdout`` for acceptance: other voices, other sentences):

- ``complete``: one complete question, command or statement. Expected: one turn.
- ``midpause``: one utterance with a 350 ms pause inside a clause. Expected: one turn.
- ``hesitation``: a 0.7-1.0 s pause after an incomplete phrase (a function word or a filler). Expected: one turn
  whose text is the whole utterance.
- ``two_turns``: two complete utterances 4 s apart. Expected: two turns.
- ``backchannel``: "mhm", "okay", ... said while the agent talks. Expected: no interruption, no answered turn.
- ``interruption``: "stop", "what about Tuesday?", ... said while the agent talks. Expected: the reply stops.
- ``noise``: a 100-200 ms non-speech burst while the agent talks. Expected: the reply goes on (or resumes).

The first four are :class:`Case` (one PCM stream, 500 ms of silence first; a runner appends silence after it).
The last three are :class:`InjectedCase`: the caller first asks ``question``; a runner injects ``injection``
``offset_s`` after the first reply audio arrives, because that moment depends on the agent.

Sample positions are in samples at 16 kHz from the start of the PCM they annotate. ``voiced_end`` is the sample
just past the last voiced 20 ms frame (frames counted from that start, voiced = above -50 dBFS), the point from which
latency is measured. Pauses are inserted as digital silence of the exact length at the gap the synthesizer makes at a
comma, so the words around them keep their prosody. Synthesized clips are cached in ``~/.cache/voice-speech-set``
(or ``$VOICE_SPEECH_SET_CACHE``), keyed by a hash of text, voice and parameters; a second run costs no synthesis.

    python -m tests.speech_set --split dev --out /tmp/dev     # every case as WAV + manifest.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import wave
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tests import speech_set_text as text
from tests.speech_bursts import KINDS as BURST_KINDS
from tests.speech_bursts import burst
from tests.speech_voices import RATE, SILENCE_DBFS, VOICES, Voice, block_dbfs

KINDS = ("complete", "midpause", "hesitation", "two_turns", "backchannel", "interruption", "noise")
SPLITS = ("dev", "holdout")
FRAME = RATE // 50  # 20 ms
LEAD_MS = 500
MIDPAUSE_MS = 350
HESITATION_MS = (700, 800, 900, 1000)
TWO_TURNS_GAP_MS = 4000
INJECT_OFFSETS_S = (0.8, 1.0, 1.2)
NOISE_LEVELS_DBFS = (-35.0, -25.0, -15.0)
_CACHE_VERSION = 2

# Voices Whisper tiny.en understands (WER <= 0.25, see tests/speech_voices.py); no voice is in both splits.
SPLIT_VOICES: dict[str, tuple[str, ...]] = {
    "dev": ("piper-1.0", "espeak-us-m3", "flite-slt"),
    "holdout": ("piper-1.2-noise", "espeak-gb-f2", "espeak-us-klatt", "flite-rms", "flite-awb"),
}


@dataclass(frozen=True)
class Pause:
    """Silence inserted inside an utterance: samples ``[start, end)``, after the words ``after``."""

    start: int
    end: int
    after: str
    kind: str  # "midpause", "function_word" or "filler"


@dataclass(frozen=True)
class Utterance:
    """One utterance in a PCM stream: its words, where its audio starts, its last voiced frame, its pauses."""

    text: str
    start: int
    voiced_end: int
    pauses: tuple[Pause, ...] = ()


@dataclass(frozen=True)
class Case:
    """A stream the caller says with no agent audio in between: ``complete``, ``midpause``, ``hesitation``,
    ``two_turns``. ``expected_turns`` are the texts of the turns a good detector ends."""

    id: str
    split: str
    kind: str
    voice: str
    pcm: bytes = field(repr=False)
    utterances: tuple[Utterance, ...]
    expected_turns: tuple[str, ...]


@dataclass(frozen=True)
class InjectedCase:
    """A question, then ``injection`` said ``offset_s`` into the agent's reply: ``backchannel``, ``interruption``
    or ``noise``. ``injection_voiced_end`` is relative to the injection's first sample; ``injection_text`` is empty
    for noise (``description`` says what it is). ``expect_interrupt``: whether the reply should stop."""

    id: str
    split: str
    kind: str
    voice: str
    question: bytes = field(repr=False)
    question_utterance: Utterance
    injection: bytes = field(repr=False)
    injection_text: str
    injection_voiced_end: int
    description: str
    offset_s: float
    expect_interrupt: bool
    expected_turns: tuple[str, ...]


@dataclass(frozen=True)
class Clip:
    """One synthesized utterance (trimmed, -20 dBFS) and the silences inserted into it."""

    pcm: bytes
    pauses: tuple[tuple[int, int], ...]  # inserted silences, relative to the clip


def plain(marked: str) -> str:
    """The words of a ``|``-marked sentence, without the marks."""
    return " ".join(marked.replace("|", " ").split())


def voiced_end(pcm: bytes, start: int = 0, end: int | None = None) -> int:
    """Sample just past the last 20 ms frame (frames counted from sample 0) in ``[start, end)`` above -50 dBFS."""
    levels = block_dbfs(pcm, FRAME)
    first, last = start // FRAME, (len(pcm) // 2 if end is None else end) // FRAME
    loud = np.nonzero(levels[first:last] > SILENCE_DBFS)[0]
    if loud.size == 0:
        raise ValueError("no voiced frame")
    return int(first + loud[-1] + 1) * FRAME


def silence(ms: int) -> bytes:
    """``ms`` of digital silence."""
    return bytes(2 * (RATE * ms // 1000))


def cache_dir() -> Path:
    """Where synthesized clips are kept: ``$VOICE_SPEECH_SET_CACHE`` or ``~/.cache/voice-speech-set``."""
    return Path(os.environ.get("VOICE_SPEECH_SET_CACHE", "~/.cache/voice-speech-set")).expanduser()


def render(voice: Voice, marked: str, pause_ms: int = 0) -> Clip:
    """``marked`` spoken by ``voice``, with the ``|`` (at most one) replaced by exactly ``pause_ms`` of silence."""
    key = hashlib.sha256(json.dumps([_CACHE_VERSION, voice.engine, voice.params, marked, pause_ms]).encode())
    path = cache_dir() / key.hexdigest()[:32]
    if path.with_suffix(".json").exists():
        meta = json.loads(path.with_suffix(".json").read_text())
        return Clip(path.with_suffix(".pcm").read_bytes(), tuple(tuple(p) for p in meta["pauses"]))
    if marked.count("|") > 1:
        raise ValueError("at most one pause per utterance")
    spoken = re.sub(r"([,.?!])?\s*\|\s*", lambda m: (m.group(1) or ",") + " ", marked)
    pcm = voice.synthesize(spoken)
    clip = _insert_pause(pcm, marked, pause_ms) if "|" in marked else Clip(pcm, ())
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix, data in ((".pcm", clip.pcm), (".json", json.dumps({"pauses": clip.pauses}).encode())):
        tmp = path.with_suffix(f"{suffix}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path.with_suffix(suffix))  # .json last: its presence means the clip is complete
    return clip


def _insert_pause(pcm: bytes, marked: str, pause_ms: int) -> Clip:
    """Replace the synthesizer's gap at the mark with exactly ``pause_ms`` of silence. The gap is the longest
    interior run of quiet 10 ms blocks near where the mark falls in the text; quiet is under -50 dBFS, or under
    -45/-40 dBFS for breathy voices whose pauses are not that silent (speech is at -20 dBFS)."""
    block = RATE // 100
    levels = block_dbfs(pcm, block)
    expected = len(marked.split("|")[0]) / len(marked) * levels.size
    for threshold in (SILENCE_DBFS, SILENCE_DBFS + 5, SILENCE_DBFS + 10):
        runs = _quiet_runs(levels < threshold)
        near = [r for r in runs if abs((r[0] + r[1]) / 2 - expected) < 0.25 * levels.size and r[1] - r[0] >= 6]
        if near:
            k, j = max(near, key=lambda r: r[1] - r[0])
            start, n = k * block, RATE * pause_ms // 1000
            return Clip(pcm[: 2 * start] + bytes(2 * n) + pcm[2 * j * block :], ((start, start + n),))
    raise ValueError(f"no pause found at the mark in {marked!r}")


def _quiet_runs(quiet: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of True that touches neither end."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], quiet.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if a > 0 and b < quiet.size]


def _voice(split: str, index: int) -> Voice:
    names = SPLIT_VOICES[split]
    return VOICES[names[index % len(names)]]


def _stream_case(split: str, kind: str, index: int, voice: Voice, parts: list[tuple[str, int, str]]) -> Case:
    """Lead silence, then each ``(marked text, pause ms, pause kind)`` utterance, ``TWO_TURNS_GAP_MS`` apart."""
    pcm, utterances = silence(LEAD_MS), []
    for marked, pause_ms, pause_kind in parts:
        if utterances:
            pcm += silence(TWO_TURNS_GAP_MS)
        start = len(pcm) // 2
        clip = render(voice, marked, pause_ms)
        pcm += clip.pcm
        pauses = tuple(Pause(start + s, start + e, plain(marked.split("|")[0]), pause_kind) for s, e in clip.pauses)
        utterances.append(Utterance(plain(marked), start, voiced_end(pcm, start), pauses))
    return Case(f"{split}-{kind}-{index:02d}", split, kind, voice.name, pcm, tuple(utterances),
                tuple(u.text for u in utterances))


def _injected_case(split: str, kind: str, index: int, voice: Voice, spoken: str, written: str,
                   description: str = "", noise: bytes = b"") -> InjectedCase:
    questions = text.COMPLETE[split]
    question = questions[(5 * index + 3) % len(questions)]
    lead = silence(LEAD_MS)
    q_pcm = lead + render(voice, question).pcm
    injection = noise or render(voice, spoken).pcm
    interrupt = kind == "interruption"
    return InjectedCase(
        id=f"{split}-{kind}-{index:02d}", split=split, kind=kind, voice=voice.name,
        question=q_pcm, question_utterance=Utterance(question, len(lead) // 2, voiced_end(q_pcm, len(lead) // 2)),
        injection=injection, injection_text=written, injection_voiced_end=voiced_end(injection),
        description=description or f"{kind}: {written}", offset_s=INJECT_OFFSETS_S[index % len(INJECT_OFFSETS_S)],
        expect_interrupt=interrupt, expected_turns=(question, written) if interrupt else (question,),
    )


def _build(split: str, kind: str) -> Iterable[Case | InjectedCase]:
    if kind == "complete":
        for i, s in enumerate(text.COMPLETE[split]):
            yield _stream_case(split, kind, i, _voice(split, i), [(s, 0, "")])
    elif kind == "midpause":
        for i, s in enumerate(text.MIDPAUSE[split]):
            yield _stream_case(split, kind, i, _voice(split, i), [(s, MIDPAUSE_MS, "midpause")])
    elif kind == "hesitation":
        for i, (s, pause_kind) in enumerate(text.HESITATION[split]):
            pause_ms = HESITATION_MS[i % len(HESITATION_MS)]
            yield _stream_case(split, kind, i, _voice(split, i + 1), [(s, pause_ms, pause_kind)])
    elif kind == "two_turns":
        completes = text.COMPLETE[split]
        for i in range(8):
            first, second = completes[(7 * i + 1) % len(completes)], completes[(7 * i + 12) % len(completes)]
            yield _stream_case(split, kind, i, _voice(split, i + 2), [(first, 0, ""), (second, 0, "")])
    elif kind in ("backchannel", "interruption"):
        pairs = text.BACKCHANNEL[split] if kind == "backchannel" else [(s, s) for s in text.INTERRUPTION[split]]
        for i in range(2 * len(pairs)):  # each twice, the second time by the next voice
            written, spoken = pairs[i % len(pairs)]
            voice = _voice(split, i % len(pairs) + i // len(pairs))
            yield _injected_case(split, kind, i, voice, spoken, written)
    elif kind == "noise":
        seed0 = 0 if split == "dev" else 1000
        for i, (burst_kind, level) in enumerate((b, lv) for b in BURST_KINDS for lv in NOISE_LEVELS_DBFS):
            ms = (120, 160, 200, 100, 140, 180)[(i + seed0 // 1000) % 6]
            desc = f"{burst_kind} {ms} ms at {level:.0f} dBFS"
            yield _injected_case(split, kind, i, _voice(split, i), "", "", desc, burst(burst_kind, ms, level, seed0 + i))
    else:
        raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")


def cases(split: str, kinds: Iterable[str] = KINDS, limit: int | None = None) -> list[Case | InjectedCase]:
    """The cases of ``split`` of the given ``kinds``, at most ``limit`` of each kind (the first ones)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; one of {SPLITS}")
    out: list[Case | InjectedCase] = []
    for kind in kinds:
        for n, case in enumerate(_build(split, kind)):
            if limit is not None and n >= limit:
                break
            out.append(case)
    return out


def write_wav(path: Path, pcm: bytes) -> None:
    """Write 16 kHz mono int16 ``pcm`` as a WAV file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)


def _manifest_entry(case: Case | InjectedCase, files: dict[str, str]) -> dict:
    entry = {k: v for k, v in asdict(case).items() if not isinstance(v, bytes)}
    return {**entry, "files": files, "rate": RATE}


def main(argv: list[str] | None = None) -> None:
    """Write every case of a split as WAV files plus ``manifest.json`` into ``--out``."""
    ap = argparse.ArgumentParser(prog="python -m tests.speech_set", description=main.__doc__)
    ap.add_argument("--split", choices=SPLITS, default="dev")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--kinds", nargs="*", choices=KINDS, default=list(KINDS))
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for case in cases(a.split, a.kinds):
        if isinstance(case, Case):
            files = {"stream": f"{case.id}.wav"}
            write_wav(a.out / files["stream"], case.pcm + silence(1500))
        else:
            files = {"question": f"{case.id}.question.wav", "injection": f"{case.id}.injection.wav"}
            write_wav(a.out / files["question"], case.question)
            write_wav(a.out / files["injection"], case.injection)
        manifest.append(_manifest_entry(case, files))
    (a.out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"{len(manifest)} cases of {a.split} in {a.out}")


if __name__ == "__main__":
    main()
