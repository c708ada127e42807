"""The knobs of turn-taking and the small judgements made with them: is this utterance a backchannel ("mhm") or
words that take the floor, and how much silence ends a turn given how complete it sounds. Pure functions of text and
numbers; the defaults are the ones measured in BENCHMARKS.md."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from ..config import Settings

#: acknowledgements that do not take the floor from a speaking agent (English); phrases are matched whole
BACKCHANNELS: tuple[str, ...] = (
    "mhm", "uhhuh", "okay", "oh okay", "yeah", "yep", "yes",
    "yup", "right", "alright", "all right", "i see", "sure", "got it", "cool", "nice", "great", "exactly",
    "true", "oh", "ah", "aha", "wow", "fine", "good", "perfect", "of course", "indeed", "makes sense",
    "sounds good", "sounds great", "that's right", "that's true", "that's fine", "very good",
    "i know", "i understand", "understood", "gotcha", "fair enough", "really", "uhoh", "oh wow",
)
#: the same, by language (the call's language picks; ``Settings.backchannels`` overrides)
BACKCHANNELS_BY_LANGUAGE: dict[str, tuple[str, ...]] = {
    "en": BACKCHANNELS,
    "es": ("sí", "si", "vale", "claro", "ajá", "aja", "ya", "mhm", "okey", "ok", "bueno", "vale vale", "ah"),
    "fr": ("oui", "ouais", "d'accord", "ok", "mhm", "ah", "bon", "voilà", "d'accord d'accord", "oui oui", "hum"),
    "de": ("ja", "genau", "okay", "ok", "mhm", "aha", "stimmt", "richtig", "gut", "ach so", "ja ja", "klar"),
}
#: words that start an interruption: heard alone in the first interim they already take the floor
STARTERS: tuple[str, ...] = (
    "stop", "wait", "no", "nope", "hold", "hang", "sorry", "excuse", "actually", "but", "cancel", "pause", "listen",
    "what", "why", "how", "when", "where", "who", "can", "could", "please", "shut", "enough", "quiet", "never",
)
#: sounds that carry no meaning by themselves: the user may be about to speak
FILLERS: tuple[str, ...] = ("um", "uh", "er", "erm", "ehm", "uhm", "mhm")

_TOKEN = re.compile(r"[\w']+")


_SPELLINGS = [  # how transcribers spell the same sound
    (re.compile(r"(?=.*m)[mh]+"), "mhm"),  # mm, mmm, hmm, mhmm, mmhmm
    (re.compile(r"uh+u?h+|uh+uh+"), "uhhuh"),  # uh-huh, uhuh, uh-uh
    (re.compile(r"uh+oh+"), "uhoh"),  # uh-oh
    (re.compile(r"o+k+a*y*|o+ke+y+|m?ka+y+"), "okay"),  # ok, okay, okey, mkay
    (re.compile(r"y+e+a*h*|y+a+h*"), "yeah"),  # yea, yeh, ya, yah
    (re.compile(r"o+h+|a+h+|o{2,}"), "oh"),  # ohh, ah, ahh, ooh
]


def words(text: str) -> list[str]:
    """Lower-case words, punctuation and inner hyphens removed, common spellings of acknowledgements made one
    ("Mm-hmm." → ["mhm"], "Yeah." → ["yeah"])."""
    out = []
    for word in _TOKEN.findall(text.lower().replace("-", "")):
        for pattern, canonical in _SPELLINGS:
            if pattern.fullmatch(word):
                word = canonical
                break
        out.append(word)
    return out


@lru_cache(maxsize=64)
def _phrases(backchannels: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """The acknowledgements as word tuples, longest first (computed once per set: every call builds a policy)."""
    phrases = {tuple(words(p)) for p in backchannels if words(p)}
    return tuple(sorted(phrases, key=len, reverse=True))


@dataclass(frozen=True)
class TurnPolicy:
    """How a call takes turns. Times in seconds."""

    #: phrases that are acknowledgements, not turns (while the agent has the floor)
    backchannels: tuple[str, ...] = BACKCHANNELS
    fillers: tuple[str, ...] = FILLERS
    #: words that take the floor at once, even alone in a first, partial transcript
    starters: tuple[str, ...] = STARTERS
    #: silence that ends a turn the detector thinks complete, has no opinion on, thinks probably or surely unfinished
    endpoint_min: float = 0.25
    endpoint: float = 0.4
    endpoint_unsure: float = 1.3
    endpoint_max: float = 2.5
    #: the detector's P(complete): at or above ``complete_above`` complete, at or below ``unsure_below`` probably
    #: unfinished, at or below ``incomplete_below`` surely unfinished
    complete_above: float = 0.8
    unsure_below: float = 0.35
    incomplete_below: float = 0.15
    #: speech over the agent this long (from its start) takes the floor even before any word is transcribed
    interrupt_after: float = 0.7
    #: ... this long when what it said so far may be the start of an acknowledgement ("sound…", "I…") or is one
    #: word too early to judge
    maybe_max: float = 0.85
    #: ... this long when all it said so far is acknowledgement
    backchannel_max: float = 1.2
    #: speech over the agent that stopped without a word: play on after this much silence
    resume_after: float = 0.4
    #: a paused reply is decided by then at the latest (played on unless real words came)
    barge_in_timeout: float = 2.5
    #: say the user is idle after this much silence with the floor free (None: never)
    user_idle: float | None = None
    _phrases: tuple[tuple[str, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_phrases", _phrases(tuple(self.backchannels)))

    def classify(self, text: str, partial: bool = False) -> str:
        """ "none" (no words, or fillers only), "backchannel" (acknowledgements only), "maybe" (what may become
        one) or "words" (takes the floor).
        ``partial``: the utterance is still going (an interim), so words that may be the start of an
        acknowledgement ("sound…" of "sounds good") are not judged yet ("maybe")."""
        tokens = [w for w in words(text) if w not in self.fillers or self._is_phrase_start(w)]
        if not tokens:
            return "none"
        i = 0
        while i < len(tokens):
            for phrase in self._phrases:
                if tuple(tokens[i : i + len(phrase)]) == phrase:
                    i += len(phrase)
                    break
            else:
                if partial and any(self._begins(tokens[i:], phrase) for phrase in self._phrases):
                    return "maybe"
                if partial and len(tokens) == 1 and tokens[0] not in self.starters:
                    return "maybe"  # one word, heard a quarter of a second in: too early to tell ("Guys" → "got it")
                return "words"
        return "backchannel"

    @staticmethod
    def _begins(tokens: list[str], phrase: tuple[str, ...]) -> bool:
        """Whether ``tokens`` could be the beginning of ``phrase`` (the last one cut short)."""
        if len(tokens) > len(phrase):
            return False
        *whole, last = tokens
        return list(phrase[: len(whole)]) == whole and phrase[len(whole)].startswith(last)

    def _is_phrase_start(self, word: str) -> bool:
        return any(p[0] == word for p in self._phrases)

    @classmethod
    def from_settings(cls, settings: Settings, language: str = "en") -> TurnPolicy:
        """The policy a call in ``language`` gets from the server's settings."""
        backchannels = settings.backchannels or BACKCHANNELS_BY_LANGUAGE.get(language.split("-")[0].lower(), ())
        return cls(
            backchannels=backchannels,
            endpoint_min=settings.endpoint_min,
            endpoint=settings.endpoint,
            endpoint_unsure=settings.endpoint_unsure,
            endpoint_max=settings.endpoint_max,
            interrupt_after=settings.interrupt_after,
            resume_after=settings.resume_after,
            user_idle=settings.user_idle_seconds,
        )

    def endpoint_delay(self, complete: float | None) -> float:
        """Silence after the last word before the turn is taken as over, given P(complete)."""
        if complete is None:
            return self.endpoint
        if complete >= self.complete_above:
            return self.endpoint_min
        if complete <= self.incomplete_below:
            return self.endpoint_max
        if complete <= self.unsure_below:
            return self.endpoint_unsure
        return self.endpoint
