"""ScanActor against a fake store: progress, outcomes, cancel, fencing, outages."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pykka
import pytest

from oppscan.actors import ScanActor, ScanDeps, ScanJob
from oppscan.market import MarketDataError
from oppscan.model import ScanParams, ScanStatus, now_iso
from oppscan.storage import NewScan
from tests.fakes import FakeStore, FakeStrategy, Recorder, immediate, market, skipping

USER = "alice"


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(4)
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


def start(
    store: FakeStore,
    strategies: Sequence[FakeStrategy],
    executor: ThreadPoolExecutor,
    recorder: Recorder,
    epoch: int = 1,
    outages: int = 0,
) -> tuple[ScanJob, pykka.ActorRef[ScanActor]]:
    params = ScanParams(tuple(s.name for s in strategies), ("SYM0",), "1h")
    created = now_iso()
    job = ScanJob("scan_" + "a" * 32, USER, params, epoch, created, created)
    store.create(NewScan(job.scan_id, USER, params, created, "test:1"), 10_000)
    store.outages = outages
    deps = ScanDeps(
        store=store,  # type: ignore[arg-type]
        executor=executor,
        strategies={s.name: s for s in strategies},
        market=market(),
        registrar=recorder,
        result_ttl=60,
        results_cap=200,
        schedule=immediate,
    )
    return job, ScanActor.start(job, deps)


def test_all_strategies_complete_and_results_are_stored(executor: ThreadPoolExecutor) -> None:
    """A scan finishes `complete` with every strategy counted and its results stored."""
    store, recorder = FakeStore(), Recorder()
    job, _ = start(store, [FakeStrategy("a", 2), FakeStrategy("b", 3)], executor, recorder)
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


def test_error_and_skipped_count_as_completed(executor: ThreadPoolExecutor) -> None:
    """A raising strategy is `error`, a skipped one `skipped`; both count, the scan completes."""
    store, recorder = FakeStore(), Recorder()
    strategies = [
        FakeStrategy("ok", 1),
        FakeStrategy("bad", raises=ValueError("boom")),
        skipping("sk"),
    ]
    job, _ = start(store, strategies, executor, recorder)
    assert recorder.done.wait(10)
    final = recorder.finished[0]
    assert (ScanStatus.COMPLETE, 3) == (final.status, final.completed)
    stored = store.records[job.scan_id].strategies
    assert {"ok": "ok", "bad": "error", "sk": "skipped"} == {n: r.status for n, r in stored.items()}
    assert "ValueError: boom" == stored["bad"].error


def test_market_data_error_fails_the_scan(executor: ThreadPoolExecutor) -> None:
    """A bad data file fails the whole scan with its message."""
    store, recorder = FakeStore(), Recorder()
    broken = FakeStrategy("a", raises=MarketDataError("data/BAD.csv: row 3: bad number"))
    start(store, [broken], executor, recorder)
    assert recorder.done.wait(10)
    final = recorder.finished[0]
    assert (ScanStatus.FAILED, "data/BAD.csv: row 3: bad number") == (final.status, final.error)


def test_snapshot_answers_while_strategies_run(executor: ThreadPoolExecutor) -> None:
    """The actor answers at once while a strategy is still running, showing durable progress."""
    store, recorder = FakeStore(), Recorder()
    gate = threading.Event()
    _, ref = start(
        store, [FakeStrategy("fast"), FakeStrategy("slow", gate=gate)], executor, recorder
    )
    seen = []
    for _ in range(200):
        snap = ref.proxy().snapshot().get(timeout=1)  # type: ignore[attr-defined]
        seen.append(snap.completed)
        if snap.completed == 1:
            break
        threading.Event().wait(0.01)
    assert 1 == seen[-1]
    assert ScanStatus.SCANNING == snap.status
    gate.set()
    assert recorder.done.wait(10)
    assert seen == sorted(seen)


def test_cancel_stops_at_a_strategy_boundary(executor: ThreadPoolExecutor) -> None:
    """Cancel records the scan as cancelled with the results that were durable."""
    store, recorder = FakeStore(), Recorder()
    gate = threading.Event()
    _, ref = start(store, [FakeStrategy("held", gate=gate)], executor, recorder)
    snap = ref.proxy().cancel().get(timeout=5)  # type: ignore[attr-defined]
    gate.set()
    assert ScanStatus.CANCELLED == snap.status
    assert recorder.done.wait(10)
    assert (ScanStatus.CANCELLED, 0) == (
        recorder.finished[0].status,
        recorder.finished[0].completed,
    )


def test_remote_cancel_request_is_seen_at_the_next_boundary(executor: ThreadPoolExecutor) -> None:
    """A cancel flag set in the store by another worker stops the scan after its next result."""
    store, recorder = FakeStore(), Recorder()
    first, held = threading.Event(), threading.Event()
    strategies = [FakeStrategy("first", gate=first), FakeStrategy("held", gate=held)]
    job, _ = start(store, strategies, executor, recorder)
    store.request_cancel(job.scan_id, USER)
    first.set()
    assert recorder.done.wait(10)
    held.set()
    final = recorder.finished[0]
    assert (ScanStatus.CANCELLED, 1) == (final.status, final.completed)


def test_a_superseded_owner_writes_nothing(executor: ThreadPoolExecutor) -> None:
    """When the stored epoch moved on, the actor releases the scan and never finishes it."""
    store, recorder = FakeStore(), Recorder()
    start(store, [FakeStrategy("a")], executor, recorder, epoch=0)
    assert recorder.done.wait(10)
    assert ([], ["scan_" + "a" * 32]) == (recorder.finished, recorder.released)
    assert ScanStatus.SCANNING == next(iter(store.records.values())).snapshot.status


def test_writes_are_retried_through_a_store_outage(executor: ThreadPoolExecutor) -> None:
    """Results written while the store is down are kept and written once it answers."""
    store, recorder = FakeStore(), Recorder()
    start(store, [FakeStrategy("a"), FakeStrategy("b")], executor, recorder, outages=3)
    assert recorder.done.wait(10)
    assert (ScanStatus.COMPLETE, 2) == (recorder.finished[0].status, recorder.finished[0].completed)
    assert 0 == store.outages
