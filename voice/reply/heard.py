"""Which words of a reply the user actually heard: each sentence's place on the output timeline, mapped back from a
heard position (whole sentences, plus the words of a partly heard one in proportion to its audio played)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Segment:
    """One sentence of a reply and where its audio lies on the output timeline. While its audio is still being
    written (``complete`` False), ``expected`` estimates its full length."""

    text: str
    start: int
    end: int
    expected: int = 0
    complete: bool = True

    @property
    def length(self) -> int:
        """Samples the sentence takes (estimated while it is still being written)."""
        return self.end - self.start if self.complete else max(self.end - self.start, self.expected)


#: speaking rate used to guess the length of a sentence whose audio is not all written yet
SECONDS_PER_CHARACTER = 0.06


class HeardText:
    """Maps a heard position back to the text of a reply that the user actually heard."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []

    def add(self, text: str, start: int, end: int) -> None:
        """A whole sentence whose audio lies between ``start`` and ``end``."""
        if end > start:
            self.segments.append(Segment(text, start, end))

    def begin(self, text: str, start: int, sample_rate: int) -> Segment:
        """A sentence whose audio starts at ``start``; extend ``end`` as audio is written, then mark it complete."""
        segment = Segment(text, start, start, int(len(text) * SECONDS_PER_CHARACTER * sample_rate), complete=False)
        self.segments.append(segment)
        return segment

    def heard(self, position: int) -> str:
        """Whole sentences heard, plus the words of a partly heard one in proportion to the audio played."""
        parts: list[str] = []
        for seg in self.segments:
            if seg.end <= seg.start:
                continue
            if seg.complete and position >= seg.end:
                parts.append(seg.text)
                continue
            if position > seg.start:
                words = seg.text.split()
                share = min(position, seg.end) - seg.start
                count = int(len(words) * share / seg.length)
                if count:
                    parts.append(" ".join(words[:count]))
            break
        return " ".join(parts)
