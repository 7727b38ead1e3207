"""What the market-data layer keeps in Redis: fetched series, who fetches one now,
and each exchange's token bucket.

The same fail-fast client and circuit breaker as the scan store: a call either
answers promptly or raises `StoreUnavailable`, and the market layer then goes
straight to the source. A Redis outage slows scans down; it never fails them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from redis.commands.core import Script

from oppscan.storage import scripts
from oppscan.storage.client import CircuitBreaker, Client
from oppscan.storage.keys import Keys
from oppscan.storage.scripts import lua


class MarketStore:
    """Series shared by every worker, single-flight fetches, and shared rate limits."""

    def __init__(self, client: Callable[[], Client], keys: Keys, breaker: CircuitBreaker) -> None:
        self._client = client
        self._keys = keys
        self._breaker = breaker
        self._series_or_fetch = lua(scripts.SERIES_OR_FETCH)
        self._share = lua(scripts.SHARE_SERIES)
        self._end_fetch = lua(scripts.END_FETCH)
        self._extend_fetch = lua(scripts.EXTEND_FETCH)
        self._take = lua(scripts.TAKE_TOKENS)
        self._hold = lua(scripts.HOLD_OFF)

    def _run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One script on the store's client, through this layer's circuit breaker."""
        return self._breaker.call(lambda: script(keys=keys, args=args, client=self._client()))

    def series_or_fetch(self, name: str, token: str, ttl_ms: int) -> bytes | bool:
        """The encoded series `name` if a worker stored it (still fresh); else True when
        the caller is now the one worker fetching it (for up to `ttl_ms`), False when
        another worker is."""
        keys = [self._keys.series(name), self._keys.series_fetch(name)]
        reply = self._run(self._series_or_fetch, keys, [token, ttl_ms])
        if int(reply[0]) == 1:
            found = reply[1]
            return found.encode() if isinstance(found, str) else bytes(found)
        return int(reply[0]) == 2

    def share(self, name: str, data: bytes, ttl_ms: int, token: str) -> None:
        """Store the fetched series for `ttl_ms` and end this worker's fetch of it."""
        keys = [self._keys.series(name), self._keys.series_fetch(name)]
        self._run(self._share, keys, [data, max(1, ttl_ms), token])

    def extend_fetch(self, name: str, token: str, ttl_ms: int) -> None:
        """This worker still fetches `name`: its claim lasts `ttl_ms` more."""
        keys = [self._keys.series_fetch(name)]
        self._run(self._extend_fetch, keys, [token, ttl_ms])

    def end_fetch(self, name: str, token: str) -> None:
        """The fetch failed: let a waiting worker try in its turn."""
        keys = [self._keys.series_fetch(name)]
        self._run(self._end_fetch, keys, [token])

    def take(self, venue: str, cost: float, per_second: float, burst: float) -> float:
        """`Throttle.take` on the venue's bucket in Redis: seconds to wait."""
        keys = [self._keys.throttle(venue)]
        wait_ms = self._run(self._take, keys, [cost, per_second, burst])
        return float(wait_ms) / 1000.0

    def hold_off(self, venue: str, seconds: float) -> None:
        """`Throttle.hold_off`: no worker sends to `venue` for `seconds`."""
        keys = [self._keys.throttle(venue)]
        self._run(self._hold, keys, [max(1, round(seconds * 1000))])
