"""An exchange's rate limit held across every worker of a deployment.

ccxt's own limiter counts the requests of one process, so four workers would
send four times the allowed rate. `SharedThrottle` keeps one token bucket per
exchange in Redis instead (on Redis's clock, so hosts need not agree on the
time), and a 429's Retry-After there stops every worker at once. While Redis
cannot answer, each worker falls back to a bucket of its own at the same
rate: slower than allowed in total is not the risk then, faster is, so the
fallback is split by the number of workers the operator runs.
"""

from __future__ import annotations

from typing import Protocol

from oppscan.logs import get_logger
from oppscan.market.base import Throttle
from oppscan.storage.client import StoreUnavailable

log = get_logger("oppscan.market")


class SharedBuckets(Protocol):
    """The Redis side (`storage.MarketStore`); may raise StoreUnavailable."""

    def take(self, venue: str, cost: float, per_second: float, burst: float) -> float: ...

    def hold_off(self, venue: str, seconds: float) -> None: ...


class SharedThrottle:
    """`Throttle` on Redis, with a per-worker share of the rate as the fallback."""

    def __init__(self, shared: SharedBuckets, fallback: Throttle, workers: int) -> None:
        self._shared = shared
        self._fallback = fallback
        self._workers = max(1, workers)

    def take(self, venue: str, cost: float, per_second: float, burst: float) -> float:
        try:
            return self._shared.take(venue, cost, per_second, burst)
        except StoreUnavailable as exc:
            log.info("throttle_unshared", venue=venue, failure_reason=exc.reason)
            share = per_second / self._workers
            return self._fallback.take(venue, cost, share, max(cost, burst / self._workers))

    def hold_off(self, venue: str, seconds: float) -> None:
        self._fallback.hold_off(venue, seconds)  # this worker waits in any case
        try:
            self._shared.hold_off(venue, seconds)
        except StoreUnavailable as exc:
            log.info("throttle_unshared", venue=venue, failure_reason=exc.reason)
