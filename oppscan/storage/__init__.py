"""Redis: the client, the key schema, the atomic scripts and the embedded server."""

from oppscan.storage.client import CircuitBreaker, StoreUnavailable, connect, redis_address
from oppscan.storage.embedded import EmbeddedRedis
from oppscan.storage.keys import Keys
from oppscan.storage.store import LeaseState, NewScan, Recorded, ScanStore

__all__ = [
    "CircuitBreaker",
    "EmbeddedRedis",
    "Keys",
    "LeaseState",
    "NewScan",
    "Recorded",
    "ScanStore",
    "StoreUnavailable",
    "connect",
    "redis_address",
]


def open_store(url: str, prefix: str, timeout: float) -> ScanStore:
    """A store on `url` with oppscan's fail-fast client and a fresh circuit breaker."""
    return ScanStore(connect(url, timeout), Keys(prefix), CircuitBreaker())
