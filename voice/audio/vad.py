"""Voice activity detection on 16 kHz int16 PCM: a small state machine over webrtcvad's per-frame decisions.

quiet → starting → speaking → stopping → quiet. Speech "starts" after ``start_ms`` of mostly voiced audio and
"stops" after ``stop_ms`` of mostly unvoiced audio, so a cough or a short pause inside a sentence does not flip it.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

FRAME_MS = 20
FRAME_SAMPLES = 16_000 * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * 2


class VADState(enum.Enum):
    """Where the detector is between quiet and speaking."""
    QUIET = "quiet"
    STARTING = "starting"
    SPEAKING = "speaking"
    STOPPING = "stopping"


@dataclass(frozen=True)
class VADConfig:
    """Detector thresholds."""
    aggressiveness: int = 2  # webrtcvad mode 0..3
    start_ms: int = 120  # voiced audio needed to call it speech
    stop_ms: int = 600  # unvoiced audio needed to call speech over
    min_dbfs: float = -50.0  # quieter frames count as silence whatever webrtcvad says
    voiced_ratio: float = 0.7  # share of voiced frames in the start window


@dataclass(frozen=True)
class VADEvent:
    """Speech started or stopped at a stream position."""
    kind: str  # "start" or "stop"
    sample: int  # stream position (in samples) where the start or the stop was detected


class VoiceActivityDetector:
    """Feed any number of samples; get start/stop events with their stream positions."""

    def __init__(self, config: VADConfig | None = None) -> None:
        self.config = config or VADConfig()
        self._vad = webrtcvad.Vad(self.config.aggressiveness)
        self._pending = b""
        self.position = 0  # samples consumed
        self.state = VADState.QUIET
        self._start_frames = max(1, self.config.start_ms // FRAME_MS)
        self._stop_frames = max(1, self.config.stop_ms // FRAME_MS)
        self._window: deque[bool] = deque(maxlen=self._start_frames)
        self._silent_run = 0
        self._min_rms = 32768.0 * 10 ** (self.config.min_dbfs / 20)
        self.last_voiced_sample = 0  # end of the most recent voiced frame

    @property
    def speaking(self) -> bool:
        """Whether speech is in progress."""
        return self.state in (VADState.SPEAKING, VADState.STOPPING)

    def is_voiced(self, frame: bytes) -> bool:
        """webrtcvad's decision for one 20 ms frame, gated by loudness."""
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
        if float(np.sqrt(np.mean(samples * samples))) < self._min_rms:
            return False
        return self._vad.is_speech(frame, 16_000)

    def process(self, pcm: bytes) -> list[VADEvent]:
        """Feed any amount of 16 kHz int16 audio; the events it caused."""
        data = self._pending + pcm
        usable = len(data) - len(data) % FRAME_BYTES
        self._pending = data[usable:]
        events: list[VADEvent] = []
        for offset in range(0, usable, FRAME_BYTES):
            event = self._step(self.is_voiced(data[offset : offset + FRAME_BYTES]))
            if event:
                events.append(event)
        return events

    def reset(self) -> None:
        """Back to quiet, forgetting any speech in progress."""
        self.state = VADState.QUIET
        self._window.clear()
        self._silent_run = 0

    def _step(self, voiced: bool) -> VADEvent | None:
        self.position += FRAME_SAMPLES
        if voiced:
            self.last_voiced_sample = self.position
        if self.state in (VADState.QUIET, VADState.STARTING):
            self._window.append(voiced)
            count = sum(self._window)
            if count == 0:
                self.state = VADState.QUIET
                return None
            self.state = VADState.STARTING
            if len(self._window) == self._start_frames and count >= self.config.voiced_ratio * self._start_frames:
                self.state = VADState.SPEAKING
                self._silent_run = 0
                self._window.clear()
                return VADEvent("start", self.position)
            return None
        # speaking or stopping
        if voiced:
            self.state = VADState.SPEAKING
            self._silent_run = 0
            return None
        self._silent_run += 1
        self.state = VADState.STOPPING
        if self._silent_run >= self._stop_frames:
            self.state = VADState.QUIET
            self._window.clear()
            return VADEvent("stop", self.position)
        return None
