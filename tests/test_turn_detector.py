"""The text turn detector's judgement of a transcript (pure): what sounds unfinished waits longer."""

from __future__ import annotations

import pytest

from voice.providers.turn import PROBABLY_UNFINISHED, SURELY_UNFINISHED, TextTurnDetector, score_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Please remind me to", SURELY_UNFINISHED),
        ("I need eggs, milk and", SURELY_UNFINISHED),
        ("What's the name of the", SURELY_UNFINISHED),
        ("So", SURELY_UNFINISHED),
        ("I was thinking…", SURELY_UNFINISHED),
        ("Where are you from?", PROBABLY_UNFINISHED),
        ("Turn the lights on", PROBABLY_UNFINISHED),
        ("Stop.", PROBABLY_UNFINISHED),  # "Stop, tell me a story instead": a pause after it is not the end
        ("Hold on.", PROBABLY_UNFINISHED),
        ("No.", None),  # an answer
        ("Yes, please.", None),
        ("What's the weather like tomorrow?", None),
        ("Stop the music.", None),
        ("", None),
    ],
)
def test_what_sounds_unfinished(text, expected):
    assert score_text(text) == expected


async def test_a_transcript_the_stt_hardly_made_out_is_probably_unfinished():
    detector = TextTurnDetector()
    assert await detector.complete("Can you book a table for", b"", confidence=0.9) == SURELY_UNFINISHED
    assert await detector.complete("Can you book a table", b"", confidence=0.3) == PROBABLY_UNFINISHED
    assert await detector.complete("Can you book a table", b"", confidence=0.9) is None
