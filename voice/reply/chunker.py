"""Sentence chunking of streamed text, so TTS can start on the first sentence while the rest is still generated.

Pure logic, no I/O: feed text with :meth:`SentenceChunker.push`, collect chunks, call :meth:`SentenceChunker.flush`
at the end. A boundary is only decided once the text after it is known, so a chunk never ends inside "3.14",
"Dr. Smith", "e.g. this", "example.com" or before a closing quote.
"""

from __future__ import annotations

import re

from ..config import ChunkerConfig

__all__ = ["ChunkerConfig", "SentenceChunker"]

# Lower-cased abbreviations (without their final period) after which a period never ends a sentence.
NEVER_FINAL = frozenset(
    "mr mrs ms dr prof sr jr st mt vs e.g i.e a.m p.m u.s u.k u.n approx dept fig no vol ca cf al inc ltd co corp "
    "gen col lt sgt capt rev hon gov sen rep pres est jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
# Abbreviations that end a sentence only when the next word is capitalised ("... pears, etc. Then").
MAYBE_FINAL = frozenset("etc a.m p.m".split())

TERMINATORS = ".!?…"
FULL_STOPS = "。！？"  # Chinese and Japanese sentence ends: no space follows them
CLOSERS = "\"')]}»”’」』）】"
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)$")
_LIST_MARKER_LINE = re.compile(r"(?:^|\n)\s*\d{1,3}$")


class SentenceChunker:
    """Splits a stream of text into speakable chunks."""

    def __init__(self, config: ChunkerConfig | None = None) -> None:
        self.config = config or ChunkerConfig()
        self._buf = ""
        self._scan = 0  # index in _buf from which boundaries are still undecided
        self._emitted = 0

    def push(self, text: str) -> list[str]:
        """Add streamed text; return the chunks that are now complete."""
        self._buf += text
        return self._drain(final=False)

    def stall(self) -> list[str]:
        """The text stream paused: decide boundaries without waiting for the next word, and release a complete
        sentence at the end of the buffer, but keep an unfinished one."""
        chunks = self._drain(final=True)
        rest = self._buf.strip()
        if rest and rest.rstrip(CLOSERS)[-1:] in TERMINATORS + FULL_STOPS and len(rest) >= self._min_len():
            chunks.append(rest)
            self._emitted += 1
            self._buf, self._scan = "", 0
        return chunks

    def flush(self) -> list[str]:
        """End of stream: return whatever is left."""
        chunks = self._drain(final=True)
        rest = self._buf.strip()
        self._buf, self._scan = "", 0
        if rest:
            chunks.append(rest)
            self._emitted += 1
        return chunks

    # --- internals -------------------------------------------------------------------------------------------

    def _min_len(self) -> int:
        return self.config.first_min_chars if self._emitted == 0 else self.config.min_chars

    def _max_len(self) -> int:
        return self.config.first_max_chars if self._emitted == 0 else self.config.max_chars

    def _drain(self, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            cut = self._next_boundary(final)
            if cut is None:
                cut = self._forced_cut()
                if cut is None:
                    return out
            chunk = self._buf[:cut].strip()
            self._buf = self._buf[cut:]
            self._scan = 0
            if chunk:
                out.append(chunk)
                self._emitted += 1

    def _next_boundary(self, final: bool) -> int | None:
        """Index just past the first acceptable boundary, or None if none can be decided yet."""
        buf = self._buf
        i = self._scan
        n = len(buf)
        while i < n:
            ch = buf[i]
            if ch == "\n":
                if len(buf[:i].strip()) >= 1 and self._long_enough(buf[:i], newline=True):
                    return i + 1
                i += 1
                continue
            # a clause break is certain once the space after it is seen ("3:45" and "1,000" have none)
            first_clause = ch in ",;:" and self._emitted == 0 and self.config.first_clause_chars
            if first_clause and i + 1 < n and buf[i + 1] == " " and len(buf[: i + 1].strip()) >= first_clause:
                return i + 1
            if ch in FULL_STOPS:
                j = i
                while j < n and buf[j] in FULL_STOPS + TERMINATORS + CLOSERS:
                    j += 1
                if j >= n and not final:
                    self._scan = i
                    return None  # "？" may become "？！"
                if self._long_enough(buf[:j]):
                    return j
                i = j
                continue
            if ch not in TERMINATORS:
                i += 1
                continue
            # the end of a run like "?!", "..." plus closing quotes or brackets
            j = i
            while j < n and buf[j] in TERMINATORS:
                j += 1
            while j < n and buf[j] in CLOSERS:
                j += 1
            if j >= n:
                if final:
                    return None  # flush() takes the rest
                self._scan = i
                return None  # need to see what follows
            if not buf[j].isspace():
                i = j  # "3.14", "example.com", "e.g" inside a token
                continue
            k = j
            while k < n and buf[k] in " \t":
                k += 1
            if k >= n and not final:
                self._scan = i
                return None  # need the next word to decide
            next_char = buf[k] if k < n else ""
            closed = buf[j - 1] in CLOSERS
            if self._is_sentence_end(buf, i, next_char, closed) and self._long_enough(buf[:j]):
                return j
            i = j
        # rescan any trailing terminators next time: "?" may become "?!" or '?"'
        self._scan = self._last_undecided(buf)
        return None

    @staticmethod
    def _last_undecided(buf: str) -> int:
        k = len(buf)
        while k > 0 and (buf[k - 1] in TERMINATORS + FULL_STOPS or buf[k - 1] in CLOSERS or buf[k - 1] in ",;:"):
            k -= 1
        return k

    def _long_enough(self, text: str, newline: bool = False) -> bool:
        n = len(text.strip())
        if newline:
            return n >= 1 if self._emitted == 0 else n >= min(self._min_len(), 2)
        return n >= self._min_len()

    @staticmethod
    def _is_sentence_end(buf: str, i: int, next_char: str, closed: bool) -> bool:
        if closed and next_char.islower():
            return False  # 'she asked (why?) and left', 'he said "no!" and went'
        if buf[i] in "!?…" or buf[i : i + 3] == "...":
            return True
        # a period: look at the word it ends
        m = _WORD_BEFORE.search(buf[:i])
        word = m.group(1).lower() if m else ""
        if word in NEVER_FINAL and word not in MAYBE_FINAL:
            return False
        if word in MAYBE_FINAL:
            return next_char.isupper()
        if m and len(m.group(1)) == 1 and m.group(1).isupper():
            return False  # an initial: "J. K. Rowling"
        if m and "." in m.group(1).strip("."):
            return next_char.isupper()  # dotted acronyms such as "N.A.S.A."
        if _LIST_MARKER_LINE.search(buf[:i]):
            return False  # "2. Second item" at the start of a line
        return bool(next_char) and not next_char.islower()

    def _forced_cut(self) -> int | None:
        """Split a run-on sentence past the maximum length at a comma, else at a space (CJK: at "，" or "、")."""
        limit = self._max_len()
        buf = self._buf
        if len(buf) <= limit:
            return None
        window = buf[:limit]
        low = max(self._min_len(), limit // 3)
        for sep in (", ", "; ", ": ", "，", "、", " – ", " - ", " "):
            k = window.rfind(sep, low)
            if k != -1:
                return k + len(sep)
        return limit
