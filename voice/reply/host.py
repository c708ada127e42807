"""What a reply needs from the call it plays on (:class:`voice.Call` implements it)."""

from __future__ import annotations

from typing import Any, Protocol

from ..agent import CallHandle
from ..config import Settings
from ..providers.base import TTSProvider
from .output import AudioOutput


class ReplyHost(CallHandle, Protocol):
    """A call as a reply sees it: where audio and messages go, with which voice and settings."""

    settings: Settings
    output: AudioOutput
    tts: TTSProvider | None

    def send(self, message: dict[str, Any]) -> None:
        """A protocol message to the client (dropped once the connection is gone)."""

    def send_error(self, message: str, code: str | None = None) -> None:
        """An ``error`` message, rate-limited per code."""
