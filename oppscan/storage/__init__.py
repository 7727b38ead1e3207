"""Redis: the client, the key schema, the atomic scripts and the embedded server."""

from oppscan.storage.client import (
    CircuitBreaker,
    Connector,
    StoreUnavailable,
    connect,
    redis_address,
)
from oppscan.storage.embedded import EmbeddedRedis
from oppscan.storage.keys import DEFAULT_SHARDS, Keys
from oppscan.storage.market_store import MarketStore
from oppscan.storage.port import Store
from oppscan.storage.store import (
    LeaseState,
    NewScan,
    Partial,
    Recorded,
    Registered,
    Registration,
    Restored,
    ScanStore,
    Written,
)

__all__ = [
    "CircuitBreaker",
    "Connector",
    "EmbeddedRedis",
    "Keys",
    "LeaseState",
    "MarketStore",
    "NewScan",
    "Partial",
    "Recorded",
    "Registered",
    "Registration",
    "Restored",
    "ScanStore",
    "Store",
    "StoreUnavailable",
    "Written",
    "connect",
    "redis_address",
]


def open_store(
    url: str,
    prefix: str,
    timeout: float,
    restart_gate: float = 2.0,
    shards: int = DEFAULT_SHARDS,
) -> ScanStore:
    """A store on `url` with oppscan's fail-fast client and a fresh circuit breaker.

    `restart_gate`: how long after the Redis process changed a read of a running
    scan answers 503 while owners write their scans back (they do within a tick).
    `shards`: how many groups the scan keys form (`keys.py`).
    """
    keys = Keys(prefix, shards)
    return ScanStore(Connector.to(url, timeout), keys, CircuitBreaker(), restart_gate)
