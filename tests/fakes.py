"""In-memory stand-ins for unit tests (never used above the unit layer)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from oppscan.market import MarketData
from oppscan.model import ScanSnapshot, ScanStatus, StrategyResult
from oppscan.storage import NewScan, Recorded, StoreUnavailable
from oppscan.strategies import Opportunity, StrategyContext, StrategySkipped


@dataclass
class FakeRecord:
    snapshot: ScanSnapshot
    epoch: int
    digest: str
    strategies: dict[str, StrategyResult] = field(default_factory=dict)
    cancel: bool = False


class FakeStore:
    """The ScanStore surface, in memory; `outages` makes the next N calls fail."""

    def __init__(self) -> None:
        self.records: dict[str, FakeRecord] = {}
        self.dedup: dict[tuple[str, str], str] = {}
        self.outages = 0
        self.outage_reason = "ConnectionError"  # or "TimeoutError": sent, maybe applied
        self.rate_wait = 0  # seconds hit_rate answers; 0: within the limit

    def _enter(self, name: str) -> None:
        if self.outages > 0:
            self.outages -= 1
            raise StoreUnavailable(self.outage_reason)

    def ping(self) -> bool:
        self._enter("ping")
        return True

    def dedup_target(self, user: str, digest: str) -> str | None:
        self._enter("dedup_target")
        return self.dedup.get((user, digest))

    def hit_rate(self, user: str, limit: int, window_s: int) -> int:
        self._enter("hit_rate")
        return self.rate_wait

    def create(self, scan: NewScan, lease_ms: int) -> bool:
        self._enter("create")
        if scan.scan_id in self.records:
            return False
        snapshot = ScanSnapshot(
            scan.scan_id,
            scan.user,
            ScanStatus.SCANNING,
            len(scan.params.strategies),
            0,
            0,
            scan.created_at,
            scan.created_at,
        )
        self.records[scan.scan_id] = FakeRecord(snapshot, scan.epoch, scan.params.digest())
        return True

    def claim_dedup(
        self, user: str, digest: str, expected: str | None, new: str, max_active: int = 0
    ) -> int:
        self._enter("claim_dedup")
        if self.dedup.get((user, digest)) != expected:
            return 0
        self.dedup[(user, digest)] = new
        return 1

    def discard(self, scan_id: str, user: str) -> None:
        self._enter("discard")
        self.records.pop(scan_id, None)

    def read(self, scan_id: str, with_results: bool = False) -> ScanSnapshot | None:
        self._enter("read")
        record = self.records.get(scan_id)
        if record is None:
            return None
        return record.snapshot if with_results else replace(record.snapshot, results=None)

    def record_strategy(
        self, scan_id: str, epoch: int, result: StrategyResult, updated_at: str
    ) -> Recorded | None:
        self._enter("record_strategy")
        record = self.records[scan_id]
        if record.epoch != epoch:
            return None
        if result.name not in record.strategies:
            record.strategies[result.name] = result
            record.snapshot = replace(
                record.snapshot,
                completed=record.snapshot.completed + 1,
                found=record.snapshot.found + len(result.opportunities),
                updated_at=updated_at,
            )
        s = record.snapshot
        return Recorded(s.completed, s.found, s.updated_at, record.cancel)

    def finish(self, snapshot: ScanSnapshot, epoch: int, digest: str, ttl: int) -> bool:
        self._enter("finish")
        record = self.records[snapshot.scan_id]
        if record.epoch != epoch:
            return False
        record.snapshot = snapshot
        return True

    def request_cancel(self, scan_id: str, user: str) -> ScanStatus | None:
        self._enter("request_cancel")
        record = self.records.get(scan_id)
        if record is None or record.snapshot.user != user:
            return None
        if not record.snapshot.status.terminal:
            record.cancel = True
        return record.snapshot.status

    def list_scans(self, user: str, limit: int) -> list[ScanSnapshot]:
        self._enter("list_scans")
        mine = [r.snapshot for r in self.records.values() if r.snapshot.user == user]
        return sorted(mine, key=lambda s: s.created_at, reverse=True)[:limit]


@dataclass(frozen=True)
class FakeStrategy:
    """A strategy whose behaviour the test chooses; `gate` holds it until set."""

    name: str
    found: int = 1
    raises: BaseException | None = None
    gate: threading.Event | None = None
    description: str = "a test strategy"

    def run(self, ctx: StrategyContext) -> Sequence[Opportunity]:
        if self.gate is not None:
            self.gate.wait(10)
        if self.raises is not None:
            raise self.raises
        return [_opportunity(self.name, i, ctx.timeframe) for i in range(self.found)]


def skipping(name: str) -> FakeStrategy:
    return FakeStrategy(name, raises=StrategySkipped("needs a second venue"))


def _opportunity(strategy: str, i: int, timeframe: str) -> Opportunity:
    return Opportunity(
        symbol=f"SYM{i}",
        strategy=strategy,
        side="long",
        score=0.5 + i / 100,
        entry_price=100.0,
        stop_loss=95.0,
        take_profit=110.0,
        expected_return=0.1,
        risk_reward=2.0,
        timeframe=timeframe,
        signal="a test signal",
        as_of="2026-01-01T00:00:00Z",
    )


class NoMarket:
    """Market data for strategies that never read it."""

    name = "none"

    def symbols(self) -> Sequence[str]:
        return ("SYM0", "SYM1")

    def venues(self) -> Sequence[str]:
        return ("only",)

    def bars(self, symbol: str, timeframe: str, venue: str | None = None) -> Any:
        raise AssertionError("fake strategies do not read bars")

    def funding_rates(self, symbol: str) -> Any:
        return None


def market() -> MarketData:
    return NoMarket()


class Recorder:
    """A Registrar that records what scans tell it, with an event per finish."""

    def __init__(self) -> None:
        self.finished: list[ScanSnapshot] = []
        self.released: list[str] = []
        self.done = threading.Event()

    def scan_finished(self, snapshot: ScanSnapshot) -> None:
        self.finished.append(snapshot)
        self.done.set()

    def scan_released(self, scan_id: str) -> None:
        self.released.append(scan_id)
        self.done.set()


def immediate(delay: float, action: Callable[[], Any]) -> None:
    """A scheduler that runs the retry at once (on a thread, as a timer would)."""
    threading.Thread(target=action, daemon=True).start()
