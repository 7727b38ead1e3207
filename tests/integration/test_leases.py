"""Leases on a real Redis: claims fence old owners, renewals, hand-offs, takeovers, queueing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from oppscan.model import ScanParams, ScanStatus, StrategyResult, new_scan_id, now_iso
from oppscan.runtime import Runtime, start_runtime, stop_runtime
from oppscan.service import ScanService
from oppscan.settings import Settings
from oppscan.storage import Keys, NewScan, ScanStore, open_store
from oppscan.strategies import available_strategies
from tests.support.polling import poll_until

PARAMS = ScanParams(("momentum", "rsi_reversal"), ("BTC-USD",), "1h")
ALL = tuple(sorted(available_strategies()))


@pytest.fixture
def store(redis_url: str) -> ScanStore:
    return open_store(redis_url, "oppscan:", 0.5)


def owned(store: ScanStore, lease_ms: int, owner: str = "a:1") -> str:
    scan_id = new_scan_id()
    store.create(NewScan(scan_id, "alice", PARAMS, now_iso(), owner), lease_ms)
    return scan_id


def poll(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    poll_until(predicate, timeout)


def test_live_leases_are_not_claimable(store: ScanStore) -> None:
    """A scan whose lease runs is neither listed nor claimable."""
    scan_id = owned(store, 60_000)
    assert [] == store.claimable(10)
    assert None is store.claim(scan_id, "b:2", 60_000)


def test_a_lapsed_lease_is_claimed_under_a_new_epoch_that_fences_the_old_owner(
    store: ScanStore,
) -> None:
    """The claimant gets epoch 2 and the durable results; epoch 1 can no longer write."""
    scan_id = owned(store, 1)
    done = StrategyResult("momentum", "ok", (), 3)
    store.record_strategy(scan_id, 1, done, now_iso())
    poll(lambda: store.claimable(10) == [scan_id])  # the 1 ms lease lapses on Redis's clock
    job = store.claim(scan_id, "b:2", 60_000)
    assert job is not None
    assert (2, (done,), PARAMS) == (job.epoch, job.done, job.params)
    late = StrategyResult("rsi_reversal", "ok", (), 1)
    assert None is store.record_strategy(scan_id, 1, late, now_iso())
    assert None is store.claim(scan_id, "c:3", 60_000)


def test_renewal_reports_lost_leases_and_cancel_requests(store: ScanStore) -> None:
    """One round trip renews all leases and says which were lost or asked to cancel."""
    kept, cancelled, taken = owned(store, 1), owned(store, 1), owned(store, 1)
    store.request_cancel(cancelled, "alice")
    poll(lambda: len(store.claimable(10)) == 3)
    assert store.claim(taken, "b:2", 60_000) is not None
    states = store.renew([(kept, 1), (cancelled, 1), (taken, 1)], 60_000)
    assert [(True, False), (True, True), (False, False)] == [
        (s.held, s.cancel_requested) for s in states
    ]
    assert [] == store.claimable(10)


def test_released_scan_is_claimable_at_once(store: ScanStore) -> None:
    """A hand-off makes the scan claimable without waiting for the lease to lapse."""
    scan_id = owned(store, 60_000)
    assert store.release(scan_id, 1)
    assert [scan_id] == store.claimable(10)
    job = store.claim(scan_id, "b:2", 60_000)
    assert job is not None
    assert 2 == job.epoch


def test_queued_scan_is_claimed_and_starts_scanning(store: ScanStore, redis_url: str) -> None:
    """A queued scan has epoch 0 and no owner until a worker claims it."""
    scan_id = new_scan_id()
    store.create(NewScan(scan_id, "alice", PARAMS, now_iso(), None), 60_000)
    snapshot = store.read(scan_id)
    assert snapshot is not None
    assert (ScanStatus.QUEUED, 2) == (snapshot.status, snapshot.total)
    assert [scan_id] == store.claimable(10)
    job = store.claim(scan_id, "b:2", 60_000)
    assert job is not None
    assert 1 == job.epoch
    assert None is redis.Redis.from_url(redis_url).zscore(Keys().pending(), scan_id)


def settings(redis_url: str, data_dir: Path, **changes: object) -> Settings:
    base: dict[str, object] = {
        "redis_url": redis_url,
        "data_dir": data_dir,
        "synthetic_latency_ms": 20.0,
        "lease_ttl": 1.0,
    }
    return Settings(**{**base, **changes})  # type: ignore[arg-type]


@pytest.fixture
def runtimes(redis_url: str, data_dir: Path) -> Iterator[list[Runtime]]:
    started: list[Runtime] = []
    yield started
    for runtime in started:
        stop_runtime(runtime)


def wait_complete(service: ScanService, scan_id: str) -> bytes:
    poll(lambda: service.status("alice", scan_id).snapshot.status is ScanStatus.COMPLETE, 60)
    results = service.results("alice", scan_id).snapshot.results
    assert results is not None
    return results


def test_a_dead_owners_scan_is_finished_by_another_worker(
    runtimes: list[Runtime], redis_url: str, data_dir: Path
) -> None:
    """When the owner stops without a hand-off, another worker claims and completes it."""
    owner = start_runtime(settings(redis_url, data_dir))
    scan_id = (
        ScanService(owner)
        .discover("alice", ScanParams(ALL, ("BTC-USD", "ETH-USD"), "1h"), False)
        .scan_id
    )
    poll(lambda: ScanService(owner).status("alice", scan_id).snapshot.completed >= 1)
    assert owner.steward is not None
    owner.steward.stop()  # the owner dies: no renewals, no release
    for owned in owner.view.owned().values():
        owned.proxy.actor_ref.stop()
    heir = start_runtime(settings(redis_url, data_dir))
    runtimes.append(heir)
    body = json.loads(wait_complete(ScanService(heir), scan_id))
    assert sorted(ALL) == sorted(body["strategy_performance"])
    assert len(ALL) == body["metadata"]["strategies_completed"]
    stop_runtime(owner)


def test_stopping_worker_hands_its_scans_off(
    runtimes: list[Runtime], redis_url: str, data_dir: Path
) -> None:
    """A worker that stops releases its leases; the other resumes without a lease timeout."""
    owner = start_runtime(settings(redis_url, data_dir, lease_ttl=30.0))
    heir = start_runtime(settings(redis_url, data_dir, lease_ttl=30.0))
    runtimes.append(heir)
    scan_id = (
        ScanService(owner)
        .discover("alice", ScanParams(ALL, ("BTC-USD", "ETH-USD"), "1h"), False)
        .scan_id
    )
    stop_runtime(owner)
    started = time.monotonic()
    body = json.loads(wait_complete(ScanService(heir), scan_id))
    assert time.monotonic() - started < 10  # far less than the 30 s lease
    assert len(ALL) == body["metadata"]["strategies_completed"]


def test_a_full_worker_queues_and_another_claims(
    runtimes: list[Runtime], redis_url: str, data_dir: Path
) -> None:
    """Past MAX_SCANS_PER_WORKER a scan is queued, reported so, and run by a worker with room."""
    full = start_runtime(settings(redis_url, data_dir, max_scans_per_worker=1))
    runtimes.append(full)
    service = ScanService(full)
    first = service.discover("alice", ScanParams(ALL, ("BTC-USD",), "1h"), False)
    second = service.discover("alice", ScanParams(ALL, ("ETH-USD",), "1h"), False)
    assert (ScanStatus.SCANNING, ScanStatus.QUEUED) == (first.status, second.status)
    assert ScanStatus.QUEUED == service.status("alice", second.scan_id).snapshot.status
    runtimes.append(start_runtime(settings(redis_url, data_dir)))
    for scan_id in (first.scan_id, second.scan_id):
        wait_complete(service, scan_id)


def test_cancelling_a_queued_scan(runtimes: list[Runtime], redis_url: str, data_dir: Path) -> None:
    """A queued scan that is cancelled finishes as cancelled with nothing run."""
    full = start_runtime(settings(redis_url, data_dir, max_scans_per_worker=1))
    runtimes.append(full)
    service = ScanService(full)
    service.discover("alice", ScanParams(ALL, ("BTC-USD",), "1h"), False)
    queued = service.discover("alice", ScanParams(ALL, ("ETH-USD",), "1h"), False).scan_id
    service.cancel("alice", queued)
    poll(lambda: service.status("alice", queued).snapshot.status is ScanStatus.CANCELLED)
    assert 0 == service.status("alice", queued).snapshot.completed


def test_a_scan_finished_meanwhile_is_not_reported_lost(store: ScanStore) -> None:
    """Renewing a lease of a scan its owner just finished is no loss and re-indexes nothing."""
    scan_id = owned(store, 60_000)
    snapshot = store.read(scan_id)
    assert snapshot is not None
    final = replace(snapshot, status=ScanStatus.COMPLETE, completed_at=now_iso(), results=b"{}")
    assert store.finish(final, 1, PARAMS.digest(), 60)
    assert [(True, False)] == [
        (s.held, s.cancel_requested) for s in store.renew([(scan_id, 1)], 60_000)
    ]
    assert [] == store.claimable(10)


def test_a_quick_stop_releases_at_once_without_waiting_for_strategies(
    redis_url: str, data_dir: Path
) -> None:
    """A quick stop (Ctrl-C) frees the lease while strategies still run (each takes
    seconds here), so another worker can resume the scan at once."""
    owner = start_runtime(settings(redis_url, data_dir, lease_ttl=30.0, synthetic_latency_ms=1000))
    params = ScanParams(ALL, ("BTC-USD", "ETH-USD"), "1h")
    scan_id = ScanService(owner).discover("alice", params, False).scan_id
    started = time.monotonic()
    stop_runtime(owner, quick=lambda: True)
    took = time.monotonic() - started
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert ("", "scanning") == tuple(client.hmget(Keys().scan(scan_id), "owner", "status"))
    client.close()
    assert took < 1.0
