"""Puts the caller's RTP audio packets back in order for the decoder, waiting only while one is missing.

aiortc's audio jitter buffer always holds four packets back before it lets one through (80 ms at 20 ms packets,
160 ms at 40 ms), and after a lost packet it stalls until its 16 slots overflow, then keeps that backlog. For a
voice agent every millisecond of the caller's audio held back is a millisecond added to the reply, and a LAN or a
good uplink rarely reorders, so :class:`AudioJitter` releases each packet the moment the one before it was
released; only when one is missing does it hold the packets after it, at most ``hold`` of them, waiting for the
late one, then gives up on it and tells the decoder to fill the gap (from the next packet's FEC, or concealed).

Pure logic, no I/O and no aiortc (:class:`~voice.transports.webrtc.codec.OpusJitterTap` feeds it from aiortc's
receiver): :meth:`AudioJitter.push` takes one packet and returns what may be decoded now, in order.
"""

from __future__ import annotations

from typing import NamedTuple

SEQ_MOD = 1 << 16  # RTP sequence numbers wrap at 16 bits
RESTART = 1000  # a jump further than this, either way, is a new stream (the sender restarted): start over


class Released(NamedTuple):
    """A packet the decoder may take now; ``after_loss``: the packet (or packets) before it never came."""

    timestamp: int
    payload: bytes
    after_loss: bool


class AudioJitter:
    """Orders one RTP audio stream by sequence number (see the module doc). Late and duplicate packets are
    dropped; ``lost``, ``late`` and ``restarts`` count what happened."""

    def __init__(self, hold: int = 2) -> None:
        if hold < 1:
            raise ValueError("hold must be at least 1 packet")
        self.hold = hold
        self._next: int | None = None  # the sequence number due next
        self._held: dict[int, tuple[int, bytes]] = {}  # sequence number → (timestamp, payload), all after _next
        self._gap = False  # packets before _next were given up on: the next release follows a loss
        self.lost = 0
        self.late = 0
        self.restarts = 0

    @property
    def held(self) -> int:
        """How many packets wait for a missing one."""
        return len(self._held)

    def push(self, seq: int, timestamp: int, payload: bytes) -> list[Released]:
        """One packet in; the packets that may be decoded now, in order (often just this one)."""
        if self._next is None:
            self._next = seq
        ahead = (seq - self._next) % SEQ_MOD
        if ahead >= SEQ_MOD // 2:  # before the one due: already released or given up on
            if SEQ_MOD - ahead <= RESTART:
                self.late += 1
                return []
            return self._restart(seq, timestamp, payload)
        if ahead > RESTART:
            return self._restart(seq, timestamp, payload)
        if seq in self._held:
            self.late += 1  # a duplicate
            return []
        self._held[seq] = (timestamp, payload)
        out = self._release()
        if len(self._held) > self.hold:  # waited long enough for the missing packet: go on without it
            due = self._next
            first = min(self._held, key=lambda s: (s - due) % SEQ_MOD)
            self.lost += (first - due) % SEQ_MOD
            self._next = first
            self._gap = True
            out += self._release()
        return out

    def reset(self) -> None:
        """A new stream (the sender changed its SSRC): the next packet starts it, whatever its number."""
        if self._next is not None:
            self.restarts += 1
        self._next = None
        self._held.clear()
        self._gap = False

    def _release(self) -> list[Released]:
        out = []
        assert self._next is not None
        while self._next in self._held:
            timestamp, payload = self._held.pop(self._next)
            out.append(Released(timestamp, payload, self._gap))
            self._gap = False
            self._next = (self._next + 1) % SEQ_MOD
        return out

    def _restart(self, seq: int, timestamp: int, payload: bytes) -> list[Released]:
        self.reset()
        return self.push(seq, timestamp, payload)
