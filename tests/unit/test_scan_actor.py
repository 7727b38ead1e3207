"""ScanActor against a fake store: progress, outcomes, cancel, fencing, outages."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pykka
import pytest

from oppscan.actors import (
    CellBusy,
    ScanActor,
    ScanDeps,
    ScanJob,
    SnapshotCell,
    first_snapshot,
)
from oppscan.actors.feed import Feeds
from oppscan.actors.proxies import scan_proxy
from oppscan.market import MarketDataError
from oppscan.model import Epoch, ScanParams, ScanStatus, now_iso
from oppscan.storage import NewScan, Recorded, Written
from tests.fakes import (
    CountingMarket,
    FakeStore,
    FakeStrategy,
    ReadingStrategy,
    Recorder,
    feeds,
    immediate,
    skipping,
)
from tests.support.polling import poll_until

USER = "alice"


class Pools:
    """Thread strategy pools made for one test, shut down after it."""

    def __init__(self) -> None:
        self.made: list[Feeds] = []

    def make(self, strategies: Sequence[FakeStrategy], threads: int = 4) -> Feeds:
        made = feeds({s.name: s for s in strategies}, threads=threads)
        self.made.append(made)
        return made


@pytest.fixture
def pools() -> Iterator[Pools]:
    made = Pools()
    yield made
    for pool in made.made:
        pool.close()


@dataclass(frozen=True)
class Started:
    job: ScanJob
    ref: pykka.ActorRef[ScanActor]
    cell: SnapshotCell


def start(
    store: FakeStore,
    strategies: Sequence[FakeStrategy],
    pools: Pools,
    recorder: Recorder,
    superseded: bool = False,
    outages: int = 0,
    schedule: Callable[[float, Callable[[], Any]], Any] = immediate,
    threads: int = 4,
) -> Started:
    params = ScanParams(tuple(s.name for s in strategies), ("SYM0",), "1h")
    created = now_iso()
    scan = NewScan("scan_" + "a" * 32, USER, params, created, "test:1")
    store.register(scan, 10_000)
    job = scan.job()
    if superseded:
        job = replace(job, epoch=Epoch(1, "another-owner"))
    store.outages = outages
    deps = ScanDeps(
        store=store,
        feeds=pools.make(strategies, threads),
        registrar=recorder,
        result_ttl=60,
        results_cap=200,
        schedule=schedule,
    )
    cell = SnapshotCell(first_snapshot(job))
    return Started(job, ScanActor.start(job, deps, cell), cell)


def test_all_strategies_complete_and_results_are_stored(pools: Pools) -> None:
    """A scan finishes `complete` with every strategy counted and its results stored."""
    store, recorder = FakeStore(), Recorder()
    job = start(store, [FakeStrategy("a", 2), FakeStrategy("b", 3)], pools, recorder).job
    assert recorder.done.wait(10)
    final = recorder.finished[0]
    assert (ScanStatus.COMPLETE, 2, 2, 5) == (
        final.status,
        final.completed,
        final.total,
        final.found,
    )
    assert final == store.records[job.scan_id].snapshot
    assert b'"opportunities_total":5' in (final.results or b"")


def test_error_and_skipped_count_as_completed(pools: Pools) -> None:
    """A raising strategy is `error`, a skipped one `skipped`; both count, the scan completes."""
    store, recorder = FakeStore(), Recorder()
    strategies = [
        FakeStrategy("ok", 1),
        FakeStrategy("bad", raises=ValueError("boom")),
        skipping("sk"),
    ]
    job = start(store, strategies, pools, recorder).job
    assert recorder.done.wait(10)
    final = recorder.finished[0]
    assert (ScanStatus.COMPLETE, 3) == (final.status, final.completed)
    stored = store.records[job.scan_id].strategies
    assert {"ok": "ok", "bad": "error", "sk": "skipped"} == {n: r.status for n, r in stored.items()}
    assert "ValueError: boom" == stored["bad"].error


def test_a_series_read_undeclared_that_fails_skips_the_strategy(pools: Pools) -> None:
    """A strategy that reads a series it did not declare, which fails, is skipped with
    the source's message; the scan goes on."""
    store, recorder = FakeStore(), Recorder()
    broken = FakeStrategy("a", raises=MarketDataError("data/BAD.csv: row 3: bad number"))
    job = start(store, [broken, FakeStrategy("b")], pools, recorder).job
    assert recorder.done.wait(10)
    assert ScanStatus.COMPLETE == recorder.finished[0].status
    stored = store.records[job.scan_id].strategies["a"]
    assert ("skipped", "data/BAD.csv: row 3: bad number") == (stored.status, stored.error)


def run_on(source: CountingMarket, strategies: Sequence[Any], symbols: tuple[str, ...]) -> Any:
    """Run one scan of `strategies` over `source` to its end: (final snapshot, record)."""
    store, recorder = FakeStore(), Recorder()
    params = ScanParams(tuple(s.name for s in strategies), symbols, "1h")
    scan = NewScan("scan_" + "f" * 32, USER, params, now_iso(), "test:1")
    store.register(scan, 10_000)
    shared = feeds({s.name: s for s in strategies}, source)
    try:
        deps = ScanDeps(store, shared, recorder, 60, 200, immediate)
        ScanActor.start(scan.job(), deps, SnapshotCell(first_snapshot(scan.job())))
        assert recorder.done.wait(10)
    finally:
        shared.close()
    return recorder.finished[0], store.records[scan.scan_id]


def test_each_series_is_fetched_once_whatever_the_strategies(pools: Pools) -> None:
    """Three strategies reading the same two series cost two fetches, and the results
    say how each series was had."""
    source = CountingMarket()
    strategies = [ReadingStrategy("r1"), ReadingStrategy("r2"), ReadingStrategy("r3")]
    final, _ = run_on(source, strategies, ("SYM0", "SYM1"))
    assert 2 == len(source.fetches)
    assert ScanStatus.COMPLETE == final.status
    market = json.loads(final.results)["metadata"]["market"]
    assert {"source": "counting", "series": 2, "fetched": 2, "cached": 0, "shared": 0} == {
        k: v for k, v in market.items() if k != "failed"
    }


def test_a_series_that_cannot_be_had_skips_the_strategies_that_read_it(pools: Pools) -> None:
    """One symbol the source does not list: its readers are skipped with the reason,
    a strategy that reads nothing still runs, and the scan completes."""
    source = CountingMarket(bad={"SYM1"})
    strategies = [ReadingStrategy("r1"), FakeStrategy("quiet")]
    final, record = run_on(source, strategies, ("SYM0", "SYM1"))
    assert ScanStatus.COMPLETE == final.status
    skipped = record.strategies["r1"]
    assert "skipped" == skipped.status
    assert "no data for SYM1 1h bars on a: counting: SYM1 is not listed" == skipped.error
    assert "ok" == record.strategies["quiet"].status
    assert 1 == json.loads(final.results)["metadata"]["market"]["failed"]


def test_a_scan_whose_every_fetch_failed_fails_naming_the_source(pools: Pools) -> None:
    """No series at all: the scan ends failed, and its error names the source."""
    source = CountingMarket(bad={"SYM0", "SYM1"})
    final, _ = run_on(source, [ReadingStrategy("r1"), ReadingStrategy("r2")], ("SYM0", "SYM1"))
    assert ScanStatus.FAILED == final.status
    assert final.error is not None
    assert final.error.startswith("no market data from counting: counting: SYM")


def test_snapshot_answers_while_strategies_run(pools: Pools) -> None:
    """The cell answers at once while a strategy is still running, showing durable progress."""
    store, recorder = FakeStore(), Recorder()
    gate = threading.Event()
    cell = start(
        store, [FakeStrategy("fast"), FakeStrategy("slow", gate=gate)], pools, recorder
    ).cell
    seen = []
    for _ in range(200):
        snap = cell.read(timeout=1)
        assert snap is not None
        seen.append(snap.completed)
        if snap.completed == 1:
            break
        threading.Event().wait(0.01)
    assert 1 == seen[-1]
    assert ScanStatus.SCANNING == snap.status
    gate.set()
    assert recorder.done.wait(10)
    assert seen == sorted(seen)


def states_seen(started: Started, store: FakeStore, want: dict[str, str]) -> None:
    """Wait until the cell shows `want`, and check that the store holds the same."""
    poll_until(lambda: _shown(started) == want, timeout=10)
    assert want == dict(store.records[started.job.scan_id].snapshot.states)


def _shown(started: Started) -> dict[str, str]:
    snapshot = started.cell.read(timeout=1)
    assert snapshot is not None
    return dict(snapshot.states)


def _running(started: Started) -> list[str]:
    return sorted(name for name, state in _shown(started).items() if state == "running")


def test_each_strategy_is_pending_then_running_then_its_outcome(pools: Pools) -> None:
    """A strategy shows `running` once a thread runs it (not while it waits for one),
    and its outcome once durable; the cell shows what the store holds."""
    store, recorder = FakeStore(), Recorder()
    gates = {name: threading.Event() for name in "abc"}
    strategies = [FakeStrategy(name, gate=gate) for name, gate in gates.items()]
    started = start(store, strategies, pools, recorder, threads=2)
    assert {"a": "pending", "b": "pending", "c": "pending"} == dict(
        first_snapshot(started.job).states
    )
    poll_until(lambda: len(_running(started)) == 2, timeout=10)
    first, second = _running(started)
    waiting = next(n for n in "abc" if n not in (first, second))
    states_seen(started, store, {first: "running", second: "running", waiting: "pending"})
    gates[first].set()  # its thread runs the waiting one next
    states_seen(started, store, {first: "ok", second: "running", waiting: "running"})
    for gate in gates.values():
        gate.set()
    assert recorder.done.wait(10)
    assert {"a": "ok", "b": "ok", "c": "ok"} == dict(recorder.finished[0].states)


def test_strategies_a_scan_never_finished_are_cancelled_when_it_ends(pools: Pools) -> None:
    """Once a scan ends, no strategy stays pending or running: the one that ran and
    the one that waited for a thread are both `cancelled`."""
    store, recorder = FakeStore(), Recorder()
    gates = {name: threading.Event() for name in "ab"}
    strategies = [FakeStrategy(name, gate=gate) for name, gate in gates.items()]
    started = start(store, strategies, pools, recorder, threads=1)
    poll_until(lambda: len(_running(started)) == 1, timeout=10)
    scan_proxy(started.ref).cancel().get(timeout=5)
    for gate in gates.values():
        gate.set()
    assert recorder.done.wait(10)
    final = recorder.finished[0]
    assert {"a": "cancelled", "b": "cancelled"} == dict(final.states)
    assert final.states == store.records[started.job.scan_id].snapshot.states


def test_cancel_stops_at_a_strategy_boundary(pools: Pools) -> None:
    """Cancel records the scan as cancelled with the results that were durable."""
    store, recorder = FakeStore(), Recorder()
    gate = threading.Event()
    started = start(store, [FakeStrategy("held", gate=gate)], pools, recorder)
    scan_proxy(started.ref).cancel().get(timeout=5)
    snap = started.cell.read(timeout=1)
    gate.set()
    assert snap is not None
    assert ScanStatus.CANCELLED == snap.status
    assert recorder.done.wait(10)
    assert (ScanStatus.CANCELLED, 0) == (
        recorder.finished[0].status,
        recorder.finished[0].completed,
    )


def test_remote_cancel_request_is_seen_at_the_next_boundary(pools: Pools) -> None:
    """A cancel flag set in the store by another worker stops the scan after its next result."""
    store, recorder = FakeStore(), Recorder()
    first, held = threading.Event(), threading.Event()
    strategies = [FakeStrategy("first", gate=first), FakeStrategy("held", gate=held)]
    job = start(store, strategies, pools, recorder).job
    store.request_cancel(job.scan_id, USER)
    first.set()
    assert recorder.done.wait(10)
    held.set()
    final = recorder.finished[0]
    assert (ScanStatus.CANCELLED, 1) == (final.status, final.completed)


def test_a_superseded_owner_writes_nothing(pools: Pools) -> None:
    """When the stored epoch moved on, the actor releases the scan and never finishes it."""
    store, recorder = FakeStore(), Recorder()
    cell = start(store, [FakeStrategy("a")], pools, recorder, superseded=True).cell
    assert recorder.done.wait(10)
    assert ([], ["scan_" + "a" * 32]) == (recorder.finished, recorder.released)
    assert ScanStatus.SCANNING == next(iter(store.records.values())).snapshot.status
    assert None is cell.read(timeout=1), "readers must go to Redis, where the new owner writes"


def test_writes_are_retried_through_a_store_outage(pools: Pools) -> None:
    """Results written while the store is down are kept and written once it answers."""
    store, recorder = FakeStore(), Recorder()
    start(store, [FakeStrategy("a"), FakeStrategy("b")], pools, recorder, outages=3)
    assert recorder.done.wait(10)
    assert (ScanStatus.COMPLETE, 2) == (recorder.finished[0].status, recorder.finished[0].completed)
    assert 0 == store.outages


def test_a_finished_scan_stays_readable_from_its_cell(pools: Pools) -> None:
    """After the actor stopped, its cell still answers the terminal snapshot Redis holds."""
    store, recorder = FakeStore(), Recorder()
    started = start(store, [FakeStrategy("a", 1)], pools, recorder)
    assert recorder.done.wait(10)
    assert started.ref.actor_stopped.wait(10)
    assert store.records[started.job.scan_id].snapshot == started.cell.read(timeout=1)


class ReadingStore(FakeStore):
    """Starts a reader of the cell while the actor is inside each write, after Redis has it."""

    def __init__(self, cell: SnapshotCell) -> None:
        super().__init__()
        self.cell = cell
        self.reads: list[tuple[int, threading.Thread, list[int | None]]] = []

    def record_strategy(self, *args: Any, **kwargs: Any) -> Recorded | Written:
        recorded = super().record_strategy(*args, **kwargs)
        assert isinstance(recorded, Recorded)
        got: list[int | None] = []

        def read() -> None:
            snapshot = self.cell.read(timeout=5)
            got.append(snapshot.completed if snapshot else None)

        reader = threading.Thread(target=read)
        reader.start()
        # Give a reader that does not wait for the publication time to answer
        # the old snapshot; one that waits is still blocked when this returns.
        reader.join(0.05)
        self.reads.append((recorded.completed, reader, got))
        return recorded


def test_a_reader_never_sees_less_than_what_redis_already_holds(
    pools: Pools,
) -> None:
    """A read of the cell made while a write lands shows that write's progress."""
    strategies = [FakeStrategy(name) for name in "abcd"]
    params = ScanParams(tuple(s.name for s in strategies), ("SYM0",), "1h")
    created = now_iso()
    scan = NewScan("scan_" + "c" * 32, USER, params, created, "test:1")
    job = scan.job()
    cell = SnapshotCell(first_snapshot(job))
    store, recorder = ReadingStore(cell), Recorder()
    store.register(scan, 10_000)
    deps = ScanDeps(store, pools.make(strategies), recorder, 60, 200, immediate)
    ScanActor.start(job, deps, cell)
    assert recorder.done.wait(10)
    behind = []
    for durable, reader, got in store.reads:
        reader.join(5)
        if got[0] is None or got[0] < durable:
            behind.append((durable, got[0]))
    assert 4 == len(store.reads)
    assert [] == behind, "(held by Redis, answered by the cell) while the write landed"


def test_a_reader_gives_up_on_a_write_that_takes_too_long() -> None:
    """A write stuck past the reader's timeout answers `CellBusy` (503), not a stale snapshot."""
    created = now_iso()
    params = ScanParams(("a",), ("SYM0",), "1h")
    job = NewScan("scan_" + "d" * 32, USER, params, created, "test:1").job()
    cell = SnapshotCell(first_snapshot(job))
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            cell.read(timeout=0.01)
        except CellBusy as exc:
            outcome.append(exc)

    with cell.writing():
        reader = threading.Thread(target=read)
        reader.start()
        reader.join(5)
    assert [CellBusy] == [type(e) for e in outcome]
    after = cell.read(timeout=1)
    assert after is not None
    assert 0 == after.completed


class BrokenStore(FakeStore):
    def record_strategy(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug, not an outage")


def test_an_actor_that_fails_records_its_scan_as_failed(pools: Pools) -> None:
    """A bug in the actor ends the scan `failed`, instead of leaving a dead owner behind."""
    store, recorder = BrokenStore(), Recorder()
    started = start(store, [FakeStrategy("a")], pools, recorder)
    assert recorder.done.wait(10)
    stored = store.records[started.job.scan_id].snapshot
    assert (ScanStatus.FAILED, "internal error") == (stored.status, stored.error)
    assert stored == started.cell.read(timeout=1)


class BrokenEverywhere(BrokenStore):
    def finish(self, *args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("a bug, not an outage")


def test_an_actor_that_fails_and_cannot_record_it_gives_its_scan_up(
    pools: Pools,
) -> None:
    """When even the failure cannot be recorded, the scan goes back to Redis's lease keeping."""
    store, recorder = BrokenEverywhere(), Recorder()
    started = start(store, [FakeStrategy("a")], pools, recorder)
    assert recorder.done.wait(10)
    assert [started.job.scan_id] == recorder.released
    assert None is started.cell.read(timeout=1)


class HeldRetries:
    """A scheduler that keeps the actor's retries until the test lets them run."""

    def __init__(self) -> None:
        self.actions: list[Callable[[], Any]] = []
        self.scheduled = threading.Event()

    def __call__(self, delay: float, action: Callable[[], Any]) -> None:
        self.actions.append(action)
        self.scheduled.set()

    def run(self) -> None:
        for action in self.actions:
            action()


@pytest.mark.parametrize(
    ("reason", "answers"),
    [("ConnectionError", "the last durable snapshot"), ("TimeoutError", "nothing")],
)
def test_a_failed_write_leaves_the_cell_honest(pools: Pools, reason: str, answers: str) -> None:
    """Refused, the write surely did not land: the owner keeps answering (Redis is down
    for everyone). Timed out, Redis may hold it: readers go to Redis until the retry."""
    store, recorder, retries = FakeStore(), Recorder(), HeldRetries()
    store.outage_reason = reason
    gate = threading.Event()
    strategies = [FakeStrategy("a", 1), FakeStrategy("held", gate=gate)]
    started = start(store, strategies, pools, recorder, outages=1, schedule=retries)

    def progress() -> int | None:
        snapshot = started.cell.read(timeout=1)
        return None if snapshot is None else snapshot.completed

    assert retries.scheduled.wait(10)  # the first result's write failed
    assert (0 if answers == "the last durable snapshot" else None) == progress()
    retries.run()
    poll_until(lambda: progress() == 1, 10)
    gate.set()
    assert recorder.done.wait(10)


class RefusingPool:
    """A strategy pool that cannot start anything (no processes left, say)."""

    def submit(self, *args: object) -> Any:
        raise OSError("cannot start a strategy process")

    def shutdown(self) -> None:
        pass


class VenuelessMarket(CountingMarket):
    """A market that cannot say its venues: planning a scan on it raises."""

    def venues(self) -> Sequence[str]:
        raise RuntimeError("no venues")


def test_a_strategy_the_pool_cannot_start_is_an_error_and_the_scan_completes() -> None:
    """The pool refuses a strategy (no process left): that strategy is `error` with the
    reason, never a scan left waiting for it."""
    store, recorder = FakeStore(), Recorder()
    refusing = feeds({"a": FakeStrategy("a")}, pool=RefusingPool())
    params = ScanParams(("a",), ("SYM0",), "1h")
    scan = NewScan("scan_" + "d" * 32, USER, params, now_iso(), "test:1")
    store.register(scan, 10_000)
    deps = ScanDeps(store, refusing, recorder, 60, 200, immediate)
    ScanActor.start(scan.job(), deps, SnapshotCell(first_snapshot(scan.job())))
    assert recorder.done.wait(10)
    assert ScanStatus.COMPLETE == recorder.finished[0].status
    stored = store.records[scan.scan_id].strategies["a"]
    assert ("error", "OSError: cannot start a strategy process") == (stored.status, stored.error)


def test_an_actor_that_cannot_start_records_its_scan_as_failed() -> None:
    """A failure in on_start (which pykka does not pass to on_failure) still ends the scan."""
    params = ScanParams(("a",), ("SYM0",), "1h")
    created = now_iso()
    scan = NewScan("scan_" + "e" * 32, USER, params, created, "test:1")
    job = scan.job()
    store, recorder = FakeStore(), Recorder()
    store.register(scan, 10_000)
    broken = feeds({"a": FakeStrategy("a")}, VenuelessMarket())
    deps = ScanDeps(store, broken, recorder, 60, 200, immediate)
    cell = SnapshotCell(first_snapshot(job))
    ref = ScanActor.start(job, deps, cell)
    assert recorder.done.wait(10)
    assert ref.actor_stopped.wait(10)
    stored = store.records[job.scan_id].snapshot
    assert (ScanStatus.FAILED, "internal error") == (stored.status, stored.error)
    assert stored == cell.read(timeout=1)
    broken.close()


def test_a_write_whose_answer_was_lost_is_counted_in_the_final_document(pools: Pools) -> None:
    """A result's write times out but landed; a cancel then closes the scan: the final
    document counts that result, as Redis does, and no reader sees progress go back."""
    store, recorder, retries = FakeStore(), Recorder(), HeldRetries()
    store.applied_then_timeout = {"record_strategy"}
    gate = threading.Event()
    strategies = [FakeStrategy("a", 1), FakeStrategy("held", gate=gate)]
    started = start(store, strategies, pools, recorder, schedule=retries)
    assert retries.scheduled.wait(10)  # the write of "a" landed, its answer was lost
    assert 1 == store.records[started.job.scan_id].snapshot.completed
    scan_proxy(started.ref).cancel().get(timeout=5)
    retries.run()
    assert recorder.done.wait(10)
    gate.set()
    final = recorder.finished[0]
    assert (ScanStatus.CANCELLED, 1) == (final.status, final.completed)
    assert b'"strategies_completed":1' in (final.results or b"")
