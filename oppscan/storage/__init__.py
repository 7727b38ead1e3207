"""Redis: the client, the key schema, the atomic scripts and the embedded server."""

from oppscan.storage.client import CircuitBreaker, StoreUnavailable, connect, redis_address
from oppscan.storage.embedded import EmbeddedRedis
from oppscan.storage.keys import Keys
from oppscan.storage.port import Store
from oppscan.storage.store import (
    LeaseState,
    NewScan,
    Recorded,
    Registration,
    ScanStore,
    Written,
)

__all__ = [
    "CircuitBreaker",
    "EmbeddedRedis",
    "Keys",
    "LeaseState",
    "NewScan",
    "Recorded",
    "Registration",
    "ScanStore",
    "Store",
    "StoreUnavailable",
    "Written",
    "connect",
    "redis_address",
]


def open_store(url: str, prefix: str, timeout: float, restore_grace: float = 20.0) -> ScanStore:
    """A store on `url` with oppscan's fail-fast client and a fresh circuit breaker.

    `restore_grace`: how long after Redis lost its data a miss answers 503 while
    owners write their scans back (two lease TTLs is plenty).
    """
    return ScanStore(connect(url, timeout), Keys(prefix), CircuitBreaker(), restore_grace)
