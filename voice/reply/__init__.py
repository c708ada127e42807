"""Where text becomes speech: the sentence chunker, the audio output contract, which words were heard, and the
reply task that runs ``on_turn`` and returns a :class:`TurnResult` (it writes no history itself)."""

from .chunker import ChunkerConfig, SentenceChunker
from .heard import HeardText, Segment
from .host import ReplyHost
from .metrics import TurnMetrics
from .output import AudioOutput, PlaybackClock
from .reply import Reply, TurnResult, as_text_stream, current_reply

__all__ = [
    "AudioOutput",
    "ChunkerConfig",
    "HeardText",
    "PlaybackClock",
    "Reply",
    "ReplyHost",
    "Segment",
    "SentenceChunker",
    "TurnMetrics",
    "TurnResult",
    "as_text_stream",
    "current_reply",
]
