"""voice: give any agent a real-time voice.

Write a :class:`VoiceAgent` with ``on_turn(transcript, ctx)``, serve it with :func:`create_app`. The package's layers
are drawn in docs/architecture.md.
"""

from .agent import FLUSH, BaseAgent, CallHandle, TurnContext, VoiceAgent, VoiceInputAgent
from .audio import AudioChunk
from .config import Settings
from .engine import Call
from .history import Message
from .providers.base import Transcriber, TranscriberSession, TTSProvider
from .server import VoiceServer, create_app

__all__ = [
    "FLUSH",
    "AudioChunk",
    "BaseAgent",
    "Call",
    "CallHandle",
    "Message",
    "Settings",
    "TTSProvider",
    "Transcriber",
    "TranscriberSession",
    "TurnContext",
    "VoiceAgent",
    "VoiceInputAgent",
    "VoiceServer",
    "create_app",
]
__version__ = "0.1.0"
