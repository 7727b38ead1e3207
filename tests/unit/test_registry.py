"""RegistryView: local scans first, a cache of terminal snapshots, never a miss; and the
RegistryActor that writes it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from oppscan.actors import (
    Registrar,
    RegistryActor,
    RegistryView,
    ScanDeps,
    ScanJob,
)
from oppscan.actors.proxies import RegistryProxy, registry_proxy
from oppscan.actors.scan import first_snapshot
from oppscan.actors.steward import Steward, oldest_age
from oppscan.actors.views import Finished, cached_bytes
from oppscan.model import Epoch, ScanParams, ScanSnapshot, ScanStatus, StrategyResult, now_iso
from oppscan.settings import Settings
from oppscan.storage import LeaseState, NewScan, Restored, StoreUnavailable
from tests.fakes import FakeStore, FakeStrategy, feeds, immediate
from tests.support.polling import poll_until

SCAN = "scan_" + "b" * 32


def running() -> ScanSnapshot:
    stamp = now_iso()
    return ScanSnapshot(SCAN, "alice", ScanStatus.SCANNING, 3, 1, 0, stamp, stamp)


def finished(completed_at: str | None = None) -> ScanSnapshot:
    stamp = completed_at or now_iso()
    return replace(
        running(), status=ScanStatus.COMPLETE, completed=3, completed_at=stamp, results=b"{}"
    )


@pytest.fixture
def registry() -> RegistryView:
    return RegistryView(300.0, 1 << 20, 3600)


def test_unknown_scan_resolves_to_nothing_and_is_not_cached(registry: RegistryView) -> None:
    """A miss is answered as a miss, and asking again is still a miss (no negative cache)."""
    assert (None, None) == (
        registry.resolve(SCAN).local,
        registry.resolve(SCAN).cached,
    )
    assert 0 == len(registry._cache)


def test_running_snapshots_are_never_cached(registry: RegistryView) -> None:
    """A running scan's progress is not remembered."""
    registry.remember(running())
    assert None is registry.resolve(SCAN).cached


def test_terminal_snapshots_are_cached(registry: RegistryView) -> None:
    """A finished scan is answered from the cache afterwards."""
    snap = finished()
    registry.remember(snap)
    assert snap == registry.resolve(SCAN).cached


def test_snapshot_with_results_is_not_replaced_by_one_without(registry: RegistryView) -> None:
    """A status-only read does not evict the cached results."""
    snap = finished()
    registry.remember(snap)
    registry.remember(replace(snap, results=None))
    assert b"{}" == registry.resolve(SCAN).cached.results


def test_nothing_is_cached_past_its_retention(registry: RegistryView) -> None:
    """A snapshot whose retention already ran out is not cached at all."""
    old = (datetime.now(UTC) - timedelta(seconds=3601)).isoformat().replace("+00:00", "Z")
    registry.remember(finished(old))
    assert None is registry.resolve(SCAN).cached


def test_cache_entry_lives_no_longer_than_the_retention_left() -> None:
    """The cache TTL of an entry is the smaller of the cache TTL and its retention left."""
    view = RegistryView(300.0, 1 << 20, 3600)
    almost = (datetime.now(UTC) - timedelta(seconds=3590)).isoformat().replace("+00:00", "Z")
    expires = view._expires(SCAN, finished(almost), now=1000.0)
    assert 1000.0 < expires <= 1010.5
    assert 1300.0 == pytest.approx(view._expires(SCAN, finished(), now=1000.0), abs=0.5)


@pytest.fixture
def registry_actor() -> Iterator[tuple[RegistryProxy, RegistryView, ScanJob, FakeStore]]:
    """A RegistryActor running one held scan over a fake store."""
    gate = threading.Event()
    strategies = {"held": FakeStrategy("held", gate=gate)}
    shared = feeds(strategies, threads=2)
    store = FakeStore()
    params = ScanParams(("held",), ("SYM0",), "1h")
    created = now_iso()
    scan = NewScan(SCAN, "alice", params, created, "unit:1")
    job = scan.job()
    store.register(scan, 10_000)

    def deps_for(registrar: Registrar) -> ScanDeps:
        return ScanDeps(store, shared, registrar, 60, 200, immediate)

    view = RegistryView(300.0, 1 << 20, 3600)
    proxy = registry_proxy(RegistryActor.start(view, deps_for, 10.0))
    proxy.spawn(job, time.monotonic()).get(timeout=5)
    yield proxy, view, job, store
    gate.set()
    proxy.actor_ref.stop()
    shared.close()


def test_lease_news_about_another_epoch_is_ignored(
    registry_actor: tuple[RegistryProxy, RegistryView, ScanJob, FakeStore],
) -> None:
    """A renewal answer for an older or newer epoch of the scan does not touch this owner."""
    proxy, view, job, _ = registry_actor
    before = view.owned()[SCAN].lease_until
    renewed_at = time.monotonic()
    proxy.leases_checked([LeaseState(SCAN, Epoch(2, "newer"), False, False)], renewed_at).get(
        timeout=5
    )
    assert view.local(SCAN) is not None
    assert before == view.owned()[SCAN].lease_until
    proxy.leases_checked([LeaseState(SCAN, job.epoch, True, False)], renewed_at).get(timeout=5)
    assert renewed_at + 10.0 == view.owned()[SCAN].lease_until


def test_a_lost_lease_takes_the_scan_off_this_worker(
    registry_actor: tuple[RegistryProxy, RegistryView, ScanJob, FakeStore],
) -> None:
    """Told its epoch lost the lease, the owner stops and readers go to Redis."""
    proxy, view, job, _ = registry_actor
    cell = view.owned()[SCAN].cell
    proxy.leases_checked([LeaseState(SCAN, job.epoch, False, False)], time.monotonic()).get(
        timeout=5
    )
    poll_until(lambda: SCAN not in view.owned(), 10)
    assert None is cell.read(timeout=1)
    assert None is view.resolve(SCAN).local


def test_a_failed_registry_asks_for_its_worker_to_be_replaced() -> None:
    """A bug in a registry handler stops the actor and calls the failure hook."""
    failed = threading.Event()
    view = RegistryView(300.0, 1 << 20, 3600)
    proxy = registry_proxy(RegistryActor.start(view, no_scans, 10.0, failed.set))
    proxy.leases_checked.defer([None], 0.0)  # type: ignore[list-item]  # a bug: an AttributeError
    assert failed.wait(10)
    assert proxy.actor_ref.actor_stopped.wait(10)


def no_scans(registrar: Registrar) -> ScanDeps:
    raise AssertionError("this registry starts no scan")


def test_a_second_claim_of_a_scan_run_here_replaces_its_actor(
    registry_actor: tuple[RegistryProxy, RegistryView, ScanJob, FakeStore],
) -> None:
    """Spawned again under a newer epoch, the old actor stops, and its late news
    leaves the new one in place."""
    proxy, view, job, store = registry_actor
    old = view.owned()[SCAN].proxy
    newer = replace(job, epoch=Epoch(2, "newer"))
    store.records[SCAN].epoch = newer.epoch  # as the claim in Redis made it
    proxy.spawn(newer, time.monotonic()).get(timeout=5)
    assert old.actor_ref.actor_stopped.wait(10)
    proxy.scan_released(SCAN, job.epoch).get(timeout=5)  # the old actor's news, late
    assert newer.epoch == view.owned()[SCAN].epoch
    assert view.owned()[SCAN].proxy.actor_ref.is_alive()


def test_a_second_claim_finds_the_old_actor_stopped_and_starts_the_new_one(
    registry_actor: tuple[RegistryProxy, RegistryView, ScanJob, FakeStore],
) -> None:
    """The old actor stopped before its news reached the registry (fenced by the new
    epoch): the new claim's actor starts all the same."""
    proxy, view, job, store = registry_actor
    old = view.owned()[SCAN].proxy
    old.actor_ref.stop()  # gone, and the registry has not heard yet
    newer = replace(job, epoch=Epoch(2, "newer"))
    store.records[SCAN].epoch = newer.epoch
    proxy.spawn(newer, time.monotonic()).get(timeout=5)
    assert newer.epoch == view.owned()[SCAN].epoch
    assert view.owned()[SCAN].proxy.actor_ref.is_alive()


def test_no_scan_actor_outlives_its_registry(
    registry_actor: tuple[RegistryProxy, RegistryView, ScanJob, FakeStore],
) -> None:
    """Stopping the registry stops every scan actor it started, replaced ones included."""
    proxy, view, job, store = registry_actor
    first = view.owned()[SCAN].proxy
    newer = replace(job, epoch=Epoch(2, "newer"))
    store.records[SCAN].epoch = newer.epoch  # else the store fences the new actor
    proxy.spawn(newer, time.monotonic()).get(timeout=5)
    second = view.owned()[SCAN].proxy
    proxy.actor_ref.stop(timeout=5)
    assert first.actor_ref.actor_stopped.wait(10)
    assert second.actor_ref.actor_stopped.wait(10)


def test_a_worker_whose_registry_failed_renews_no_lease(
    registry_actor: tuple[RegistryProxy, RegistryView, ScanJob, FakeStore],
) -> None:
    """Once the registry is dead the steward neither renews nor claims: the scans lapse
    to other workers while this one is replaced."""
    proxy, view, _, _ = registry_actor
    store = FakeStore()
    steward = Steward(store, proxy, view, "unit:1", Settings(redis_url="redis://unused"))
    steward.tick()
    assert "renew" in store.calls
    proxy.actor_ref.stop(timeout=5)
    store.calls.clear()
    steward.tick()
    assert [] == store.calls


def finished_scan(store: FakeStore, scan_id: str, expires_in: float) -> Finished:
    """A scan finished here, as the registry keeps it, whose record Redis then lost."""
    params = ScanParams(("held",), ("SYM0",), "1h")
    created = now_iso()
    scan = NewScan(scan_id, "alice", params, created, "unit:1")
    store.register(scan, 10_000)
    job = scan.job()
    end = (datetime.now(UTC) + timedelta(seconds=expires_in)).isoformat()
    final = replace(
        first_snapshot(job),
        status=ScanStatus.COMPLETE,
        completed=1,
        completed_at=created,
        results=b"{}",
        expires_at=end.replace("+00:00", "Z"),
    )
    store.records.pop(scan_id)  # Redis came back without it
    result = StrategyResult("held", "ok", (), 1)
    return Finished(job, final, (result,), params.digest(), 60)


def steward_after_restart(
    store: FakeStore, finished: list[Finished]
) -> tuple[Steward, RegistryView]:
    view = RegistryView(60.0, 1 << 20, 60)
    view.publish_finished(finished)
    proxy = registry_proxy(RegistryActor.start(view, lambda registrar: None))  # type: ignore[arg-type,return-value]
    store.restarted = True
    return Steward(store, proxy, view, "unit:1", Settings(redis_url="redis://unused")), view


def test_a_scan_finished_here_is_written_back_finished_after_a_restart() -> None:
    """Redis restarted without a scan this worker finished: it is written back finished,
    with what is left of its retention, and claims wait meanwhile."""
    store = FakeStore()
    kept = finished_scan(store, "scan_" + "1" * 32, expires_in=30)
    steward, _ = steward_after_restart(store, [kept])
    steward.tick()
    assert ScanStatus.COMPLETE == store.records[kept.job.scan_id].snapshot.status
    assert "claimable" not in store.calls


class FlakyRestore(FakeStore):
    """A store whose first restore finds Redis gone again."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def restore(self, *args: Any, **kwargs: Any) -> Restored:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("ConnectionError")
        return super().restore(*args, **kwargs)


def test_a_write_back_the_store_could_not_take_is_tried_again() -> None:
    """The first write-back fails: the next tick writes the scan back."""
    store = FlakyRestore()
    kept = finished_scan(store, "scan_" + "2" * 32, expires_in=30)
    steward, _ = steward_after_restart(store, [kept])
    with pytest.raises(StoreUnavailable):
        steward.tick()
    assert kept.job.scan_id not in store.records
    steward.tick()
    assert ScanStatus.COMPLETE == store.records[kept.job.scan_id].snapshot.status


def test_a_scan_whose_retention_ended_is_not_brought_back() -> None:
    """Nothing lingers: a finished scan past its `expires_at` stays gone."""
    store = FakeStore()
    gone = finished_scan(store, "scan_" + "3" * 32, expires_in=-1)
    steward, _ = steward_after_restart(store, [gone])
    steward.tick()
    assert gone.job.scan_id not in store.records


def test_the_oldest_running_scan_is_measured_from_its_creation(
    registry_actor: tuple[RegistryProxy, RegistryView, ScanJob, FakeStore],
) -> None:
    """What `oppscan_oldest_running_scan_seconds` shows: the age of the oldest scan
    this worker owns, by its `created_at`; nothing owned is 0."""
    _, view, job, _ = registry_actor
    created = datetime.fromisoformat(job.created_at.replace("Z", "+00:00")).timestamp()
    assert 90.0 == pytest.approx(oldest_age(view.owned().values(), created + 90.0), abs=0.01)
    assert 0.0 == oldest_age([], created + 90.0)


def test_the_cache_is_bounded_by_bytes_and_drops_the_least_recently_used() -> None:
    """Four finished scans with 10 KB results in a cache of three: the least recently
    read goes; a scan larger than the whole cache is never cached."""
    bound = 3 * cached_bytes(sized(0, 10_000))
    view = RegistryView(300.0, bound, 3600)
    for i in range(3):
        view.remember(sized(i, 10_000))
    assert view.resolve(scan_id(0)).cached is not None  # read: now the most recent
    view.remember(sized(3, 10_000))
    kept = [i for i in range(4) if view.resolve(scan_id(i)).cached is not None]
    assert [0, 2, 3] == kept
    view.remember(sized(4, bound))
    assert None is view.resolve(scan_id(4)).cached
    assert view._cache.currsize <= view._cache.maxsize


def scan_id(i: int) -> str:
    return f"scan_{i:032x}"


def sized(i: int, size: int) -> ScanSnapshot:
    return replace(finished(), scan_id=scan_id(i), results=b"x" * size)
