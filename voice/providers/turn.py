"""End-of-turn detection: how likely is it that the user has finished their turn, given what they said (and how it
sounded)? The engine asks at the start of each pause and waits longer after "Can you remind me to…" than after
"What time is it?".

:class:`TurnDetector` is the interface; :class:`TextTurnDetector` judges the words alone (no model, no cost);
:class:`voice.local.smart_turn.SmartTurnDetector` adds the audio's prosody (Smart Turn v3), and
:class:`CombinedTurnDetector` puts two together.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod

#: words a sentence does not end with: articles, conjunctions, possessives, fillers
UNFINISHED_ENDINGS = frozenset(
    "a an the and or but nor because if than my your our their his her its every each whose um uh er erm uhm "
    "to for with of between from by".split()
)
#: words a sentence seldom ends with but may ("Where are you from?", "Turn the lights on", "I like that")
UNSURE_ENDINGS = frozenset("in on at about into onto like as that so then well".split())
#: a whole utterance of one of these is a start, not a turn
OPENERS = frozenset("so well and but or i um uh er erm okay so um like hmm".split())
#: a whole utterance of one of these usually prefaces more ("Stop, tell me a story instead"; "Wait, what about…")
INTERJECTIONS = frozenset(
    tuple(phrase.split())
    for phrase in ("stop", "wait", "hey", "actually", "sorry", "listen", "hold on", "hang on", "excuse me",
                   "one moment", "one second")
)
SURELY_UNFINISHED = 0.1
PROBABLY_UNFINISHED = 0.3
_WORD = re.compile(r"[a-z0-9']+")


class TurnDetector(ABC):
    """Scores how complete a user's turn sounds."""

    @abstractmethod
    async def complete(self, text: str, audio: bytes, confidence: float | None = None) -> float | None:
        """P(the turn is over) in [0, 1] for ``text`` (the transcript so far, of which the STT is ``confidence``
        sure) and ``audio`` (the last seconds of the user's 16 kHz int16 audio, ending now), or None for no
        opinion."""

    async def warm_up(self) -> None:  # noqa: B027 - optional
        """Load what the detector needs before the first call."""


class TextTurnDetector(TurnDetector):
    """Judges the words: a turn that ends on a function word or a filler ("remind me to", "milk and", "um") is
    unfinished, and so probably is one the STT could hardly make out (a phrase cut short: Whisper guesses at
    its end); anything else is left to the default silence (the words alone cannot tell more).
    ``unsure_below``: the STT confidence under which a transcript counts as hardly made out."""

    def __init__(self, unsure_below: float = 0.47) -> None:
        self.unsure_below = unsure_below

    async def complete(self, text: str, audio: bytes, confidence: float | None = None) -> float | None:
        """Score ``text`` and how sure the STT was of it; the audio is not used."""
        score = score_text(text)
        if confidence is not None and confidence < self.unsure_below and (score is None or score > PROBABLY_UNFINISHED):
            return PROBABLY_UNFINISHED
        return score


def score_text(text: str) -> float | None:
    """The text-only judgement (pure): low for a turn that sounds unfinished, else no opinion. A question mark
    makes an ending on a preposition only *probably* unfinished ("Where are you from?")."""
    stripped = text.strip()
    tokens = _WORD.findall(stripped.lower())
    if not tokens:
        return None
    if stripped.endswith(("...", "…", ",", "-", "—", ";", ":")):
        return SURELY_UNFINISHED
    last = tokens[-1]
    if len(tokens) == 1 and last in OPENERS:
        return SURELY_UNFINISHED
    if tuple(tokens) in INTERJECTIONS:
        return PROBABLY_UNFINISHED
    if last in UNFINISHED_ENDINGS:
        return PROBABLY_UNFINISHED if stripped.endswith("?") and last in STRANDABLE else SURELY_UNFINISHED
    if last in UNSURE_ENDINGS:
        return PROBABLY_UNFINISHED
    return None


#: prepositions a question may end with
STRANDABLE = frozenset("to for with of from by between".split())


class CombinedTurnDetector(TurnDetector):
    """Two detectors: an unfinished verdict from either wins (waiting a little longer costs less than answering
    half a sentence); otherwise the audio's score, else the text's."""

    def __init__(self, text: TurnDetector, audio: TurnDetector) -> None:
        self.text = text
        self.audio = audio

    async def complete(self, text: str, audio: bytes, confidence: float | None = None) -> float | None:
        """The more cautious of the two scores."""
        by_text = await self.text.complete(text, audio, confidence)
        by_audio = await self.audio.complete(text, audio, confidence)
        scores = [s for s in (by_text, by_audio) if s is not None]
        if not scores:
            return None
        if min(scores) <= 0.3:
            return min(scores)
        return by_audio if by_audio is not None else by_text

    async def warm_up(self) -> None:
        """Warm both up."""
        await self.text.warm_up()
        await self.audio.warm_up()
