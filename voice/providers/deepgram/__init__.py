"""Deepgram providers built on the official ``deepgram-sdk`` 7.x.

* :class:`FluxTranscriber` — Flux conversational STT (``/v2/listen``) with Deepgram's own turn detection,
  including optional eager (speculative) end of turn → :class:`~voice.providers.base.EagerFinal` /
  :class:`~voice.providers.base.TurnResumed`.
* :class:`NovaTranscriber` — Nova-3 streaming STT (``/v1/listen``) with interim results, endpointing,
  ``UtteranceEnd``, VAD events, keep-alive and ``Finalize``.
* :class:`AuraTTS` — Aura TTS over the ``/v1/speak`` WebSocket, with the REST endpoint as fallback; linear16 at
  8–48 kHz or μ-law 8/16 kHz for telephony.

Configuration: ``api_key=`` / ``DEEPGRAM_API_KEY`` and ``base_url=`` / ``DEEPGRAM_BASE_URL`` (for a local fake
or self-hosted Deepgram). Nothing connects, and no SDK client is built, until a provider is used; constructing
one without a key is fine. STT sessions reconnect on drops and replay un-finalized audio (≤ 30 s); a rejected
key becomes a fatal :class:`~voice.providers.base.TranscriberError` whose message never contains the key.
"""

from ._common import DeepgramAuthError, DeepgramConfig, DeepgramError
from .aura import AuraTTS
from .flux import FluxTranscriber
from .nova import NovaTranscriber
from .streaming import StreamSettings

__all__ = [
    "AuraTTS",
    "DeepgramAuthError",
    "DeepgramConfig",
    "DeepgramError",
    "FluxTranscriber",
    "NovaTranscriber",
    "StreamSettings",
]
