"""The holes a review found in the fault model, each on a real redis-server.

Every test here reproduces one way the service lost a user's action, ran a
scan for ever or let a scan change after it finished.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest
import redis

from oppscan.actors import ScanActor
from oppscan.model import ScanParams, ScanStatus
from oppscan.processes import free_port
from oppscan.runtime import Runtime, start_runtime, stop_runtime
from oppscan.service import ScanNotFound, ScanService
from oppscan.settings import Settings
from oppscan.storage import EmbeddedRedis, Keys, StoreUnavailable, open_store
from oppscan.strategies import available_strategies
from tests.faults.conftest import scan_field
from tests.integration.test_leases import settings as lease_settings
from tests.support.polling import poll_until

ALL = tuple(sorted(available_strategies()))
SLOW = ScanParams(ALL, ("BTC-USD", "ETH-USD", "SOL-USD"), "1h")


def settings(redis_url: str, data_dir: Path, **changes: object) -> Settings:
    """Market data at 100 ms per fetch, one fetch at a time (so a scan's strategies
    finish in steps: the primary venue's, then the other venues', then funding's),
    leases of 2 s."""
    slow = {"synthetic_latency_ms": 100.0, "fetch_concurrency": 1, "lease_ttl": 2.0}
    return lease_settings(redis_url, data_dir, **{**slow, **changes})


@pytest.fixture
def runtimes() -> Iterator[list[Runtime]]:
    started: list[Runtime] = []
    yield started
    for runtime in started:
        stop_runtime(runtime)


def start(runtimes: list[Runtime], config: Settings) -> ScanService:
    runtime = start_runtime(config)
    runtimes.append(runtime)
    return ScanService(runtime)


def completed(redis_url: str, scan_id: str) -> int:
    return int(scan_field(redis_url, scan_id, "completed") or 0)


def live_scan_actors(scan_id: str) -> int:
    return sum(
        1
        for ref in pykka.ActorRegistry.get_by_class(ScanActor)
        if ref.is_alive() and ref._actor._job.scan_id == scan_id  # type: ignore[attr-defined]
    )


def wait_terminal(service: ScanService, scan_id: str, timeout: float = 60) -> ScanStatus:
    poll_until(lambda: service.status("alice", scan_id).snapshot.status.terminal, timeout)
    return service.status("alice", scan_id).snapshot.status


def test_a_scan_claimed_again_by_its_own_worker_runs_under_one_actor(
    runtimes: list[Runtime], redis_url: str, data_dir: Path
) -> None:
    """A worker that claims a scan it still runs stops the old actor and runs it once."""
    config = settings(
        redis_url, data_dir, max_scans_per_worker=2, synthetic_latency_ms=500.0, strategy_threads=1
    )
    service = start(runtimes, config)
    # Done in three steps, half a second apart: two on the primary venue's bars, then
    # the one reading every venue, then the one reading funding.
    params = ScanParams(
        ("momentum", "rsi_reversal", "cross_venue_arbitrage", "funding_rate_arbitrage"),
        ("BTC-USD",),
        "1h",
    )
    scan_id = service.discover("alice", params, False).scan_id
    poll_until(lambda: completed(redis_url, scan_id) >= 1, 30)
    # Another worker claims the scan and hands it back at once (it was stopping):
    # its lease is free again while our first actor still runs it.
    raw = redis.Redis.from_url(redis_url)
    raw.hset(Keys().scan(scan_id), "lease", 0)
    store = open_store(redis_url, "oppscan:", 0.5)
    job = store.claim(scan_id, "other:2", 60_000, "other")
    assert job is not None
    assert True is store.release(scan_id, job.epoch)
    poll_until(lambda: scan_field(redis_url, scan_id, "owner").endswith(f":{os.getpid()}"), 10)
    assert ScanStatus.COMPLETE == wait_terminal(service, scan_id, 60)
    assert ("3", 4) == (scan_field(redis_url, scan_id, "epoch"), completed(redis_url, scan_id))
    poll_until(lambda: live_scan_actors(scan_id) == 0, 10)
    stop_runtime(runtimes.pop())
    assert [] == [t.name for t in threading.enumerate() if "ScanActor" in t.name]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test alone, that it stops and starts again."""
    server = EmbeddedRedis(tmp_path / "redis", port=free_port(), fsync="always").start()
    yield server
    server.stop()


def test_a_cancel_is_acknowledged_only_once_it_is_in_redis(
    runtimes: list[Runtime], own_redis: EmbeddedRedis, data_dir: Path
) -> None:
    """While Redis is down, even the owner answers a cancel 503; once back, it lands."""
    service = start(runtimes, settings(own_redis.url, data_dir, lease_ttl=10.0))
    scan_id = service.discover("alice", SLOW, False).scan_id
    own_redis.kill()
    with pytest.raises(StoreUnavailable):
        service.cancel("alice", scan_id)
    own_redis.start()

    def cancelled() -> bool:
        try:
            service.cancel("alice", scan_id)
        except StoreUnavailable:
            return False
        return True

    poll_until(cancelled, 20)
    assert ScanStatus.CANCELLED == wait_terminal(service, scan_id, 30)


def test_a_scan_being_cancelled_is_never_joined(
    runtimes: list[Runtime], redis_url: str, data_dir: Path
) -> None:
    """POST, DELETE (landing on another worker), POST: the second POST starts a new scan."""
    owner = start(runtimes, settings(redis_url, data_dir, lease_ttl=10.0))
    other = start(runtimes, settings(redis_url, data_dir, lease_ttl=10.0, max_scans_per_worker=1))
    first = owner.discover("alice", SLOW, False)
    other.cancel("alice", first.scan_id)
    again = owner.discover("alice", SLOW, False)
    assert (False, True) == (again.deduplicated, again.scan_id != first.scan_id)
    assert ScanStatus.CANCELLED == wait_terminal(owner, first.scan_id, 30)


def test_nothing_of_a_scan_remains_after_its_retention(
    runtimes: list[Runtime], redis_url: str, data_dir: Path
) -> None:
    """Scans with a 1 s retention leave no key behind once it has passed."""
    service = start(
        runtimes,
        settings(
            redis_url,
            data_dir,
            synthetic_latency_ms=0.0,
            result_ttl=1,
            discover_rate_per_minute=0,
            max_active_scans_per_user=100,
        ),
    )
    ids = [
        service.discover("alice", ScanParams(("momentum",), (symbol,), "1h"), False).scan_id
        for symbol in ("BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD", "DOT-USD")
    ]
    for scan_id in ids:
        wait_terminal(service, scan_id, 30)
    raw = redis.Redis.from_url(redis_url, decode_responses=True)

    def scan_keys() -> list[str]:
        return [k for k in raw.keys("oppscan:*") if not k.startswith("oppscan:series:")]

    poll_until(lambda: not scan_keys(), 10)
    # Market series are no scan's: shared, they expire with their candle.
    assert all(raw.pttl(k) > 0 for k in raw.keys("oppscan:series:*"))
    for scan_id in ids:
        with pytest.raises(ScanNotFound):
            service.status("alice", scan_id)


def test_an_owner_rewrites_a_record_that_redis_lost(
    runtimes: list[Runtime], redis_url: str, data_dir: Path
) -> None:
    """Redis loses every key mid-scan: the owner writes back what it holds and finishes."""
    owner = start(runtimes, settings(redis_url, data_dir))
    other = start(runtimes, settings(redis_url, data_dir, max_scans_per_worker=1))
    scan_id = owner.discover("alice", SLOW, False).scan_id
    poll_until(lambda: completed(redis_url, scan_id) >= 2, 30)
    redis.Redis.from_url(redis_url).flushall()
    poll_until(lambda: owner.status("alice", scan_id).snapshot.status.terminal, 60)
    results = other.results("alice", scan_id).snapshot
    assert (ScanStatus.COMPLETE, len(ALL)) == (results.status, results.completed)
    assert results.results is not None


def test_a_discover_whose_write_timed_out_leaves_no_orphan_scan(
    runtimes: list[Runtime], redis_url: str, data_dir: Path
) -> None:
    """A registration that timed out but was applied is the one the retry joins."""
    service = start(
        runtimes,
        settings(redis_url, data_dir, redis_timeout=0.2, discover_rate_per_minute=0),
    )
    service.discover("alice", ScanParams(("momentum",), ("ETH-USD",), "1h"), False)
    params = ScanParams(("momentum",), ("BTC-USD",), "1h")
    raw = redis.Redis.from_url(redis_url)
    # Redis stalls past the client's timeout, then runs what was sent meanwhile.
    stall = threading.Thread(target=raw.execute_command, args=("DEBUG", "SLEEP", "0.6"))
    stall.start()
    poll_until(lambda: _stalled(redis_url), 5)
    with pytest.raises(StoreUnavailable):
        service.discover("alice", params, False)
    stall.join()

    def retried() -> str | None:
        try:
            return service.discover("alice", params, False).scan_id
        except StoreUnavailable:
            return None

    poll_until(lambda: retried() is not None, 20)
    listed = [s.scan_id for s in service.list_scans("alice", 10) if s.total == 1]
    assert 2 == len(listed)
    assert ScanStatus.COMPLETE == wait_terminal(service, listed[0], 30)


def _stalled(redis_url: str) -> bool:
    probe = redis.Redis.from_url(redis_url, socket_timeout=0.05)
    try:
        probe.ping()
    except redis.TimeoutError:
        return True
    finally:
        probe.close()
    return False


def status_in(aof: bytes, directory: Path, scan_id: str) -> str:
    """The scan's status in a Redis started from that append-only file alone."""
    directory.mkdir(parents=True)
    (directory / "appendonly.aof").write_bytes(aof)
    witness = EmbeddedRedis(directory, port=free_port(), fsync="always").start()
    try:
        return scan_field(witness.url, scan_id, "status")
    finally:
        witness.stop()


def test_a_scan_finished_in_the_writes_redis_lost_is_written_back_finished(
    runtimes: list[Runtime], data_dir: Path, tmp_path: Path
) -> None:
    """Redis crashes and comes back from an append-only file written before the scan
    finished: the worker that finished it writes it back finished, under its own
    epoch; it is not claimed and run again, and no reader sees it running again."""
    store = EmbeddedRedis(tmp_path / "redis", port=free_port(), fsync="always").start()
    try:
        service = start(runtimes, settings(store.url, data_dir, lease_ttl=3.0))
        params = ScanParams(("momentum", "cross_venue_arbitrage"), ("BTC-USD",), "1h")
        scan_id = service.discover("alice", params, False).scan_id
        poll_until(lambda: completed(store.url, scan_id) >= 1, 30)
        before_finish = (store.directory / "appendonly.aof").read_bytes()
        assert ScanStatus.COMPLETE == wait_terminal(service, scan_id, 30)
        epoch = scan_field(store.url, scan_id, "epoch")
        # What Redis comes back knowing (read on a server of its own: the worker
        # may write the scan back before a read of the restarted one).
        assert "scanning" == status_in(before_finish, tmp_path / "witness", scan_id)
        store.kill()
        (store.directory / "appendonly.aof").write_bytes(before_finish)
        store.start()
        poll_until(lambda: scan_field(store.url, scan_id, "status") == "complete", 10)
        assert (epoch, 2) == (
            scan_field(store.url, scan_id, "epoch"),
            completed(store.url, scan_id),
        )
        # Past a lease's lapse, nobody has claimed it and run it again.
        time.sleep(4.0)  # a lease (3 s) lapsing is what is waited for here, not an event
        assert ("complete", epoch) == (
            scan_field(store.url, scan_id, "status"),
            scan_field(store.url, scan_id, "epoch"),
        )
    finally:
        store.stop()
