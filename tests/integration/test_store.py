"""ScanStore against a real redis-server: atomic steps, fencing, one TTL for everything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from oppscan.model import ScanParams, ScanStatus, StrategyResult, new_scan_id, now_iso
from oppscan.storage import EmbeddedRedis, Keys, NewScan, ScanStore, open_store

LEASE_MS = 60_000
PARAMS = ScanParams(("momentum", "rsi_reversal"), ("BTC-USD",), "1h")


@pytest.fixture
def store(redis_url: str) -> ScanStore:
    return open_store(redis_url, "oppscan:", 0.5)


@pytest.fixture
def raw(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def new_scan(user: str = "alice") -> NewScan:
    return NewScan(new_scan_id(), user, PARAMS, now_iso(), "host:1")


def result(name: str, found: int = 1) -> StrategyResult:
    opportunity = {"symbol": "BTC-USD", "strategy": name, "score": 0.5, "expected_return": 0.1}
    return StrategyResult(name, "ok", tuple(opportunity for _ in range(found)), 5)


def test_created_scan_is_readable_with_totals_and_no_expiry(
    store: ScanStore, raw: redis.Redis
) -> None:
    """A new scan is readable at once with total > 0 and its key does not expire."""
    scan = new_scan()
    assert store.create(scan, LEASE_MS)
    snap = store.read(scan.scan_id)
    assert snap is not None
    assert (ScanStatus.SCANNING, 2, 0) == (snap.status, snap.total, snap.completed)
    assert -1 == raw.ttl(Keys().scan(scan.scan_id))


def test_a_read_survives_the_server_closing_its_connection(
    store: ScanStore, raw: redis.Redis
) -> None:
    """Redis dropped every client (as on a restart): the next read still answers."""
    scan = new_scan()
    store.create(scan, LEASE_MS)
    assert store.read(scan.scan_id) is not None  # this thread's connection is open now
    killed = raw.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    again = store.read(scan.scan_id)
    assert again is not None
    assert scan.scan_id == again.scan_id
    assert not store.breaker.is_open


def test_creating_twice_is_refused(store: ScanStore) -> None:
    """A scan id is registered once."""
    scan = new_scan()
    assert (True, False) == (store.create(scan, LEASE_MS), store.create(scan, LEASE_MS))


def test_strategy_result_is_recorded_once(store: ScanStore) -> None:
    """Recording the same strategy twice counts it once."""
    scan = new_scan()
    store.create(scan, LEASE_MS)
    first = store.record_strategy(scan.scan_id, 1, result("momentum", 2), now_iso())
    again = store.record_strategy(scan.scan_id, 1, result("momentum", 2), now_iso())
    assert first is not None
    assert again is not None
    assert ((1, 2), (1, 2)) == ((first.completed, first.found), (again.completed, again.found))
    assert first.updated_at == again.updated_at


def test_writes_with_a_stale_epoch_are_fenced(store: ScanStore, raw: redis.Redis) -> None:
    """A writer whose epoch is not the scan's changes nothing."""
    scan = new_scan()
    store.create(scan, LEASE_MS)
    raw.hset(Keys().scan(scan.scan_id), "epoch", 2)
    assert None is store.record_strategy(scan.scan_id, 1, result("momentum"), now_iso())
    snap = store.read(scan.scan_id)
    assert snap is not None
    finished = snap.__class__(**{**snap.__dict__, "status": ScanStatus.COMPLETE, "results": b"{}"})
    assert False is store.finish(finished, 1, PARAMS.digest(), 60)
    assert (0, ScanStatus.SCANNING) == (snap.completed, store.read(scan.scan_id).status)  # type: ignore[union-attr]


def test_finish_writes_results_and_one_ttl_for_every_key(
    store: ScanStore, raw: redis.Redis
) -> None:
    """The terminal step stores results, flips status, and expires scan and dedup together."""
    scan = new_scan()
    store.create(scan, LEASE_MS)
    assert store.claim_dedup("alice", PARAMS.digest(), None, scan.scan_id)
    for name in PARAMS.strategies:
        store.record_strategy(scan.scan_id, 1, result(name), now_iso())
    snap = store.read(scan.scan_id)
    assert snap is not None
    stamp = now_iso()
    final = snap.__class__(
        **{
            **snap.__dict__,
            "status": ScanStatus.COMPLETE,
            "results": b'{"ok":1}',
            "completed_at": stamp,
        }
    )
    assert store.finish(final, 1, PARAMS.digest(), 120)
    stored = store.read(scan.scan_id, with_results=True)
    assert stored is not None
    assert (ScanStatus.COMPLETE, b'{"ok":1}', stamp, 2) == (
        stored.status,
        stored.results,
        stored.completed_at,
        stored.completed,
    )
    keys = Keys()
    ttls = {raw.ttl(keys.scan(scan.scan_id)), raw.ttl(keys.dedup("alice", PARAMS.digest()))}
    assert {120} == ttls
    assert None is raw.zscore(keys.running(), scan.scan_id)


def test_dedup_claim_is_compare_and_set(store: ScanStore) -> None:
    """Only the claimant that saw the current pointer wins."""
    digest = PARAMS.digest()
    assert store.claim_dedup("alice", digest, None, "scan_a")
    assert not store.claim_dedup("alice", digest, None, "scan_b")
    assert store.claim_dedup("alice", digest, "scan_a", "scan_c")
    assert "scan_c" == store.dedup_target("alice", digest)


def test_cancel_request_only_for_the_owner_user(store: ScanStore) -> None:
    """Another user's cancel is answered as not found and changes nothing."""
    scan = new_scan()
    store.create(scan, LEASE_MS)
    assert None is store.request_cancel(scan.scan_id, "bob")
    assert ScanStatus.SCANNING == store.request_cancel(scan.scan_id, "alice")
    recorded = store.record_strategy(scan.scan_id, 1, result("momentum"), now_iso())
    assert recorded is not None
    assert recorded.cancel_requested


def test_list_scans_newest_first_and_forgets_expired(store: ScanStore, raw: redis.Redis) -> None:
    """A user's list is newest first, excludes others' scans and prunes expired ids."""
    older, newer, gone = new_scan(), new_scan(), new_scan()
    for scan in (older, newer, gone):
        store.create(scan, LEASE_MS)
    store.create(new_scan("bob"), LEASE_MS)
    raw.delete(Keys().scan(gone.scan_id))
    listed = [s.scan_id for s in store.list_scans("alice", 10)]
    assert [newer.scan_id, older.scan_id] == listed
    assert None is raw.zscore(Keys().user_scans("alice"), gone.scan_id)


def test_strategy_results_round_trip(store: ScanStore) -> None:
    """Per-strategy results come back as they were written (for resuming a scan)."""
    scan = new_scan()
    store.create(scan, LEASE_MS)
    written = result("momentum", 3)
    store.record_strategy(scan.scan_id, 1, written, now_iso())
    assert store.release(scan.scan_id, 1)
    resumed = store.claim(scan.scan_id, "heir:2", LEASE_MS)
    assert resumed is not None
    assert (written,) == resumed.done
    assert json.loads(written.to_json())["name"] == "momentum"


def test_embedded_redis_keeps_its_data_across_a_restart(tmp_path: Path) -> None:
    """The embedded server writes an append-only file: a restart loses nothing retained."""
    server = EmbeddedRedis(tmp_path / "embedded").start()
    try:
        redis.Redis.from_url(server.url).set("kept", "yes")
    finally:
        server.stop()
    server.start()
    try:
        assert b"yes" == redis.Redis.from_url(server.url).get("kept")
    finally:
        server.stop()
