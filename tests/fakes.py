"""In-memory stand-ins for unit tests (never used above the unit layer)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from oppscan.actors import RegistryActor, RegistryView, ScanDeps
from oppscan.actors.feed import Feeds
from oppscan.actors.proxies import registry_proxy
from oppscan.actors.scan import Registrar
from oppscan.actors.strategy_run import StrategyPool, ThreadStrategyPool
from oppscan.actors.views import Finished
from oppscan.http.resources import ApiDeps
from oppscan.market import MarketData
from oppscan.market.base import Bars, FloatArray, Freshness, MarketDataError, SeriesKey
from oppscan.market.cache import SeriesCache
from oppscan.market.plan import FetchPool
from oppscan.model import (
    QUEUED_EPOCH,
    Epoch,
    ScanJob,
    ScanSnapshot,
    ScanStatus,
    StrategyResult,
    StrategyStates,
    initial_states,
)
from oppscan.runtime import Runtime
from oppscan.service import ScanService
from oppscan.settings import Settings
from oppscan.storage import (
    CircuitBreaker,
    LeaseState,
    NewScan,
    Partial,
    Recorded,
    Registered,
    Registration,
    Restored,
    StoreUnavailable,
    Written,
)
from oppscan.storage.keys import Keys
from oppscan.strategies import Opportunity, Strategy, StrategyContext, StrategySkipped, Universe


@dataclass
class FakeRecord:
    snapshot: ScanSnapshot
    epoch: Epoch
    digest: str
    strategies: dict[str, StrategyResult] = field(default_factory=dict)
    cancel: bool = False


class FakeStore:
    """The `Store` port, in memory; `outages` makes the next N calls fail."""

    def __init__(self) -> None:
        self.records: dict[str, FakeRecord] = {}
        self.dedup: dict[tuple[str, str], str] = {}
        self.outages = 0
        self.restarted = False  # server_restarted answers True once when set
        self.outage_reason = "ConnectionError"  # or "TimeoutError": sent, maybe applied
        self.rate_wait = 0  # seconds hit_rate answers; 0: within the limit
        self.applied_then_timeout: set[str] = set()  # calls that land, then time out once
        self.calls: list[str] = []
        self.breaker = CircuitBreaker()

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if self.outages > 0:
            self.outages -= 1
            raise StoreUnavailable(self.outage_reason)

    def _answer_lost(self, name: str) -> None:
        if name in self.applied_then_timeout:
            self.applied_then_timeout.discard(name)
            raise StoreUnavailable("TimeoutError")

    def ping(self) -> bool:
        self._enter("ping")
        return True

    def probe(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def hit_rate(self, user: str, limit: int, window_s: int) -> int:
        self._enter("hit_rate")
        return self.rate_wait

    def new_scan_id(self, user: str) -> str:
        return Keys().new_scan_id(user)

    def register(
        self, scan: NewScan, lease_ms: int, force_refresh: bool = False, max_active: int = 0
    ) -> Registration:
        self._enter("register")
        digest = scan.params.digest()
        current = self.records.get(self.dedup.get((scan.user, digest), ""))
        if current is not None and not current.cancel:
            status = current.snapshot.status
            if not status.terminal:
                return Registration(Registered.JOINED, current.snapshot.scan_id, status)
            if status is ScanStatus.COMPLETE and not force_refresh:
                return Registration(Registered.REUSED, current.snapshot.scan_id, status)
        status = ScanStatus.SCANNING if scan.owner else ScanStatus.QUEUED
        stamp = scan.created_at
        total = len(scan.params.strategies)
        snapshot = ScanSnapshot(
            scan.scan_id,
            scan.user,
            status,
            total,
            0,
            0,
            stamp,
            stamp,
            params=scan.params,
            states=initial_states(scan.params.strategies),
        )
        epoch = scan.epoch if scan.owner else QUEUED_EPOCH
        self.records[scan.scan_id] = FakeRecord(snapshot, epoch, digest)
        self.dedup[(scan.user, digest)] = scan.scan_id
        self._answer_lost("register")
        return Registration(Registered.CREATED, scan.scan_id, status)

    def claimable(self, limit: int) -> list[str]:
        self._enter("claimable")
        return []

    def claim(self, scan_id: str, owner: str, lease_ms: int, tag: str) -> ScanJob | None:
        self._enter("claim")
        return None

    def renew(self, leases: Sequence[tuple[str, Epoch]], lease_ms: int) -> list[LeaseState]:
        self._enter("renew")
        return [self._lease(sid, epoch) for sid, epoch in leases]

    def _lease(self, scan_id: str, epoch: Epoch) -> LeaseState:
        record = self.records.get(scan_id)
        if record is None:
            return LeaseState(scan_id, epoch, False, forgotten=True)
        return LeaseState(scan_id, epoch, record.epoch == epoch, record.cancel)

    def release(self, scan_id: str, epoch: Epoch) -> bool | Written:
        self._enter("release")
        if scan_id not in self.records:
            return Written.FORGOTTEN
        return self.records[scan_id].epoch == epoch

    def read(self, scan_id: str) -> ScanSnapshot | None:
        self._enter("read")
        record = self.records.get(scan_id)
        if record is None:
            return None
        return replace(record.snapshot, results=None)

    def read_partial(self, scan_id: str) -> Partial | None:
        self._enter("read_partial")
        record = self.records.get(scan_id)
        if record is None:
            return None
        done = tuple(sorted(record.strategies.values(), key=lambda r: r.name))
        return Partial(record.snapshot, done)

    def record_strategy(
        self,
        scan_id: str,
        epoch: Epoch,
        result: StrategyResult,
        updated_at: str,
        durable: int = 0,
        states: StrategyStates = (),
    ) -> Recorded | Written:
        self._enter("record_strategy")
        record = self.records.get(scan_id)
        if record is None:
            return Written.FORGOTTEN
        if record.epoch != epoch or record.snapshot.status.terminal:
            return Written.FENCED
        if result.name not in record.strategies:
            record.strategies[result.name] = result
            record.snapshot = replace(
                record.snapshot,
                completed=record.snapshot.completed + 1,
                found=record.snapshot.found + len(result.opportunities),
                updated_at=updated_at,
            )
        if states:
            record.snapshot = replace(record.snapshot, states=states)
        s = record.snapshot
        self._answer_lost("record_strategy")
        return Recorded(s.completed, s.found, s.updated_at, record.cancel)

    def write_states(self, scan_id: str, epoch: Epoch, states: StrategyStates) -> Written | None:
        self._enter("write_states")
        record = self.records.get(scan_id)
        if record is None:
            return Written.FORGOTTEN
        if record.epoch != epoch:
            return Written.FENCED
        if not record.snapshot.status.terminal:
            record.snapshot = replace(record.snapshot, states=states)
        self._answer_lost("write_states")
        return None

    def finish(self, snapshot: ScanSnapshot, epoch: Epoch, digest: str, ttl: int) -> Written | None:
        self._enter("finish")
        record = self.records.get(snapshot.scan_id)
        if record is None:
            return Written.FORGOTTEN
        if record.epoch != epoch:
            return Written.FENCED
        if not record.snapshot.status.terminal:
            record.snapshot = snapshot
        return None

    def restore(
        self,
        job: ScanJob,
        owner: str,
        done: Sequence[StrategyResult],
        updated_at: str,
        lease_ms: int,
        recreate: bool = True,
        states: StrategyStates = (),
    ) -> Restored:
        self._enter("restore")
        known = self.records.get(job.scan_id)
        if known is not None and known.epoch != job.epoch:
            return Restored.FENCED
        if known is not None and known.snapshot.status.terminal:
            return Restored.FINISHED
        if known is None and not recreate:
            return Restored.NOT_OURS
        total = len(job.params.strategies)
        found = sum(len(r.opportunities) for r in done)
        snapshot = ScanSnapshot(
            job.scan_id,
            job.user,
            ScanStatus.SCANNING,
            total,
            len(done),
            found,
            job.created_at,
            updated_at,
            states=states or initial_states(job.params.strategies, done),
        )
        record = FakeRecord(snapshot, job.epoch, job.params.digest())
        record.strategies = {r.name: r for r in done}
        self.records[job.scan_id] = record
        return Restored.WRITTEN

    def server_restarted(self) -> bool:
        self._enter("server_restarted")
        restarted, self.restarted = self.restarted, False
        return restarted

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

    def needs(self, universe: Universe) -> list[SeriesKey]:
        return []  # reads no market data

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

    def freshness(self, key: SeriesKey, now: float) -> Freshness:
        return Freshness("always", 60.0)

    def funding_rates(self, symbol: str) -> Any:
        return None


def market() -> MarketData:
    return NoMarket()


class CountingMarket:
    """Tiny bars for any symbol on venues `a` and `b`, counting each fetch; symbols in
    `bad` fail as an exchange that errors would."""

    name = "counting"

    def __init__(self, bad: Collection[str] = ()) -> None:
        self.bad = set(bad)
        self.fetches: list[SeriesKey] = []
        self._lock = threading.Lock()

    def symbols(self) -> Sequence[str]:
        return ("SYM0", "SYM1")

    def venues(self) -> Sequence[str]:
        return ("a", "b")

    def bars(self, symbol: str, timeframe: str, venue: str | None = None) -> Bars:
        with self._lock:
            self.fetches.append(SeriesKey.bars(venue or "a", symbol, timeframe))
        if symbol in self.bad:
            raise MarketDataError(f"counting: {symbol} is not listed")
        closes = np.linspace(1.0, 2.0, 5)
        times = np.arange(5, dtype=np.int64) * 3600
        return Bars(symbol, venue or "a", timeframe, times, closes, closes, closes, closes, closes)

    def funding_rates(self, symbol: str) -> FloatArray | None:
        with self._lock:
            self.fetches.append(SeriesKey.funding("a", symbol))
        return None

    def freshness(self, key: SeriesKey, now: float) -> Freshness:
        return Freshness("always", 60.0)


@dataclass
class ReadingStrategy:
    """Declares and reads the primary bars of every symbol; one opportunity-free run."""

    name: str
    description: str = "reads bars"

    def needs(self, universe: Universe) -> list[SeriesKey]:
        return universe.primary_bars()

    def run(self, ctx: StrategyContext) -> Sequence[Opportunity]:
        for symbol in ctx.symbols:
            ctx.market.bars(symbol, ctx.timeframe)
        return []


def feeds(
    strategies: Mapping[str, Strategy],
    source: MarketData | None = None,
    threads: int = 4,
    pool: StrategyPool | None = None,
) -> Feeds:
    """What a worker's scans share, over `source` (no market by default), no Redis."""
    cache = SeriesCache(source or market(), None, 64 * 1024 * 1024, 10.0)
    pool = pool or ThreadStrategyPool(threads, strategies)
    return Feeds(pool, cache, FetchPool(4), strategies)


class Recorder:
    """A Registrar that records what scans tell it, with an event per finish."""

    def __init__(self) -> None:
        self.finished: list[ScanSnapshot] = []
        self.released: list[str] = []
        self.done = threading.Event()

    def scan_finished(self, finished: Finished) -> None:
        self.finished.append(finished.final)
        self.done.set()

    def scan_released(self, scan_id: str, epoch: Epoch) -> None:
        self.released.append(scan_id)
        self.done.set()


def immediate(delay: float, action: Callable[[], Any]) -> None:
    """A scheduler that runs the retry at once (on a thread, as a timer would)."""
    threading.Thread(target=action, daemon=True).start()


@contextlib.contextmanager
def api_on_fakes(
    store: FakeStore,
    strategies: Mapping[str, Strategy],
    symbols: Callable[[], Sequence[str]] = lambda: ("SYM0", "SYM1"),
) -> Iterator[ApiDeps]:
    """What the HTTP resources need, on `store`: a real registry actor and scan actors,
    fake strategies, no market, no Redis."""
    shared = feeds(strategies, threads=2)

    def deps_for(registrar: Registrar) -> ScanDeps:
        return ScanDeps(store, shared, registrar, 60, 200, immediate)

    view = RegistryView(60.0, 1 << 20, 60)
    registry = registry_proxy(RegistryActor.start(view, deps_for))
    settings = Settings(redis_url="redis://unused")
    runtime = Runtime(settings, store, market(), strategies, shared, registry, view, "unit:1")
    try:
        yield ApiDeps(ScanService(runtime), strategies, symbols, store.ping, "unit:1")
    finally:
        registry.actor_ref.stop()
        shared.close()
