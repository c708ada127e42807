"""Rate limits as token buckets: cheap enough to check on every audio frame."""

from __future__ import annotations

import time


class TokenBucket:
    """Allows ``rate`` units per second on average, with bursts of up to ``burst`` units."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = time.monotonic()

    def take(self, amount: float) -> bool:
        """Take ``amount`` units if they are available now."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= amount:
            self._tokens -= amount
            return True
        return False
