"""Build the default providers by name, importing each only when chosen (so the keyless default never touches the
cloud SDKs, and a cloud-only install never imports the local models).

Names: STT ``local`` (default), ``flux``, ``nova-3``; TTS ``local`` (default), ``aura``. Environment: ``VOICE_STT``,
``VOICE_TTS``; cloud choices need ``DEEPGRAM_API_KEY``.
"""

from __future__ import annotations

import os

from .base import Transcriber, TTSProvider

STT_CHOICES = ("local", "flux", "nova-3")
TTS_CHOICES = ("local", "aura")


class ProviderConfigError(RuntimeError):
    """A provider was chosen that cannot be built (missing key or package)."""


def _need_key(what: str) -> None:
    if not os.environ.get("DEEPGRAM_API_KEY"):
        raise ProviderConfigError(f"{what} needs DEEPGRAM_API_KEY; set it, or use the offline default 'local'")


def make_transcriber(name: str | None = None) -> Transcriber:
    """The STT called ``name`` (default ``VOICE_STT`` or local); raises ProviderConfigError naming what is missing."""
    name = (name or os.environ.get("VOICE_STT") or "local").lower()
    if name == "local":
        try:
            from ..local import WhisperTranscriber
        except ImportError as exc:
            raise ProviderConfigError(
                f"the offline STT needs the [local] extra: pip install 'voice[local]' ({exc})") from None
        return WhisperTranscriber()
    if name == "flux":
        _need_key("--stt flux")
        from .deepgram import FluxTranscriber

        return FluxTranscriber()
    if name in ("nova-3", "nova3", "nova"):
        _need_key("--stt nova-3")
        from .deepgram import NovaTranscriber

        return NovaTranscriber()
    raise ProviderConfigError(f"unknown STT {name!r}; choose one of {', '.join(STT_CHOICES)}")


def make_tts(name: str | None = None) -> TTSProvider:
    """The TTS called ``name`` (default ``VOICE_TTS`` or local); raises ProviderConfigError naming what is missing."""
    name = (name or os.environ.get("VOICE_TTS") or "local").lower()
    if name == "local":
        try:
            from ..local import PiperTTS
        except ImportError as exc:
            raise ProviderConfigError(
                f"the offline TTS needs the [local] extra: pip install 'voice[local]' ({exc})") from None
        return PiperTTS()
    if name == "aura":
        _need_key("--tts aura")
        from .deepgram import AuraTTS

        return AuraTTS()
    raise ProviderConfigError(f"unknown TTS {name!r}; choose one of {', '.join(TTS_CHOICES)}")
