"""Deprecated: use :mod:`voice.reply` (``AudioOutput``, ``PlaybackClock``, ``HeardText``, ``Segment``). This
re-export stays for one release."""

import warnings

from .reply import AudioOutput, HeardText, PlaybackClock, Segment  # noqa: F401
from .reply.heard import SECONDS_PER_CHARACTER  # noqa: F401

warnings.warn("voice.playback is deprecated; import from voice.reply", DeprecationWarning, stacklevel=2)
