"""`Store`: the surface of `ScanStore` that actors, the steward and the service use.

Unit tests pass an in-memory stand-in that implements it; everything above the
unit layer runs the real `ScanStore` on a real Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from oppscan.model import (
    Epoch,
    ScanJob,
    ScanSnapshot,
    ScanStatus,
    StrategyResult,
    StrategyStates,
)
from oppscan.storage.client import CircuitBreaker
from oppscan.storage.store import (
    LeaseState,
    NewScan,
    Partial,
    Recorded,
    Registration,
    Restored,
    Written,
)


class Store(Protocol):
    breaker: CircuitBreaker

    def ping(self) -> bool: ...

    def probe(self) -> bool: ...

    def close(self) -> None: ...

    def new_scan_id(self, user: str) -> str: ...

    def register(
        self, scan: NewScan, lease_ms: int, force_refresh: bool = False, max_active: int = 0
    ) -> Registration: ...

    def hit_rate(self, user: str, limit: int, window_s: int) -> int: ...

    def claimable(self, limit: int) -> list[str]: ...

    def claim(self, scan_id: str, owner: str, lease_ms: int, tag: str) -> ScanJob | None: ...

    def renew(self, leases: Sequence[tuple[str, Epoch]], lease_ms: int) -> list[LeaseState]: ...

    def release(self, scan_id: str, epoch: Epoch) -> bool | Written: ...

    def read(self, scan_id: str) -> ScanSnapshot | None: ...

    def read_partial(self, scan_id: str) -> Partial | None: ...

    def server_restarted(self) -> bool: ...

    def record_strategy(
        self,
        scan_id: str,
        epoch: Epoch,
        result: StrategyResult,
        updated_at: str,
        durable: int = 0,
        states: StrategyStates = (),
    ) -> Recorded | Written: ...

    def write_states(
        self, scan_id: str, epoch: Epoch, states: StrategyStates
    ) -> Written | None: ...

    def finish(
        self, snapshot: ScanSnapshot, epoch: Epoch, digest: str, ttl: int
    ) -> Written | None: ...

    def restore(
        self,
        job: ScanJob,
        owner: str,
        done: Sequence[StrategyResult],
        updated_at: str,
        lease_ms: int,
        recreate: bool = True,
        states: StrategyStates = (),
    ) -> Restored: ...

    def request_cancel(self, scan_id: str, user: str) -> ScanStatus | None: ...

    def list_scans(self, user: str, limit: int) -> list[ScanSnapshot]: ...
