"""An exchange rate limit held in this process: a token bucket per venue.

The fallback when no shared throttle is configured, and the test double for one.
Tokens are taken at once, so concurrent callers queue up as debt: each is told how
long to wait until its share is repaid. A hold-off (a 429's Retry-After) empties
the bucket and stops it refilling until it ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float  # refilled up to here; in the future while a hold-off lasts


class LocalThrottle:
    """A thread-safe `Throttle` for one process; `clock` is monotonic seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def take(self, venue: str, cost: float, per_second: float, burst: float) -> float:
        """Take `cost` tokens now (going into debt if need be): the seconds to wait."""
        if per_second <= 0:
            raise ValueError(f"per_second must be positive, got {per_second}")
        with self._lock:
            now = self._clock()
            bucket = self._buckets.setdefault(venue, _Bucket(burst, now))
            if now > bucket.updated:
                refill = (now - bucket.updated) * per_second
                bucket.tokens = min(burst, bucket.tokens + refill)
                bucket.updated = now
            bucket.tokens = min(burst, bucket.tokens - cost)  # a refund never overfills
            return max(0.0, bucket.updated - now) + max(0.0, -bucket.tokens) / per_second

    def hold_off(self, venue: str, seconds: float) -> None:
        """Nothing goes to `venue` for `seconds`; after that the bucket refills from empty."""
        with self._lock:
            until = self._clock() + max(0.0, seconds)
            bucket = self._buckets.setdefault(venue, _Bucket(0.0, until))
            bucket.tokens = min(bucket.tokens, 0.0)
            bucket.updated = max(bucket.updated, until)

    def __repr__(self) -> str:
        with self._lock:
            venues = sorted(self._buckets)
        return f"LocalThrottle(venues={venues})"
