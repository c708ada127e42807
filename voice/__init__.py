"""voice: give any agent a real-time voice.

Write a :class:`VoiceAgent` with ``on_turn(transcript, ctx)``, serve it with :func:`create_app`.
"""

from .agent import BaseAgent, TurnContext, VoiceAgent, VoiceInputAgent
from .audio import AudioChunk
from .call import Call
from .config import Settings
from .providers.base import Transcriber, TranscriberSession, TTSProvider
from .server import VoiceServer, create_app
from .storage import Message

__all__ = [
    "AudioChunk",
    "BaseAgent",
    "Call",
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
