"""Per-turn timings: monotonic timestamps of one reply, and the ``metrics`` message built from them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TurnMetrics:
    """Monotonic timestamps of one turn; :meth:`message` turns them into the ``metrics`` message."""

    speech_ended_at: float | None = None  # user stopped speaking
    final_at: float | None = None  # final transcript received
    started_at: float = field(default_factory=time.monotonic)  # on_turn called
    first_text_at: float | None = None
    text_done_at: float | None = None
    first_sentence_at: float | None = None
    first_tts_audio_at: float | None = None
    first_audio_sent_at: float | None = None
    tts_seconds: float = 0.0
    ended_at: float | None = None

    def message(self) -> dict[str, Any]:
        """The ``metrics`` message (docs/protocol.md)."""
        def ms(a: float | None, b: float | None) -> int | None:
            return None if a is None or b is None else round(1000 * (b - a))

        start = self.started_at
        return {
            "type": "metrics",
            # @cloudflare/voice's fields (its client reads these four)
            "llm_ms": ms(start, self.text_done_at),
            "tts_ms": round(1000 * self.tts_seconds),
            "first_audio_ms": ms(start, self.first_audio_sent_at) or 0,
            "total_ms": ms(self.speech_ended_at or start, self.ended_at),
            # ours
            "stt_ms": ms(self.speech_ended_at, self.final_at),
            "first_text_ms": ms(start, self.first_text_at),
            "tts_first_audio_ms": ms(self.first_sentence_at, self.first_tts_audio_at),
            "voice_to_voice_ms": ms(self.speech_ended_at, self.first_audio_sent_at),
            "first_text_from_speech_ms": ms(self.speech_ended_at, self.first_text_at),
        }
