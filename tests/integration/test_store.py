"""ScanStore against a real redis-server: atomic steps, fencing, one TTL for everything."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from oppscan.model import (
    ScanParams,
    ScanStatus,
    StrategyResult,
    StrategyStates,
    now_iso,
)
from oppscan.processes import free_port
from oppscan.storage import (
    EmbeddedRedis,
    Keys,
    NewScan,
    Recorded,
    ScanStore,
    StoreUnavailable,
    Written,
    open_store,
)
from oppscan.storage.keys import shard_of_scan
from tests.support.cluster import ClusterDeployment, raw_client
from tests.support.polling import poll_until

LEASE_MS = 60_000
PARAMS = ScanParams(("momentum", "rsi_reversal"), ("BTC-USD",), "1h")


Raw = redis.Redis | redis.RedisCluster


@pytest.fixture
def store(store_url: str) -> ScanStore:
    return open_store(store_url, "oppscan:", 0.5)


@pytest.fixture
def raw(store_url: str) -> redis.Redis | redis.RedisCluster:
    return raw_client(store_url)


def new_scan(user: str = "alice", params: ScanParams = PARAMS) -> NewScan:
    return NewScan(Keys().new_scan_id(user), user, params, now_iso(), "host:1")


def create(store: ScanStore, scan: NewScan) -> None:
    assert "created" == store.register(scan, LEASE_MS).kind


def result(name: str, found: int = 1) -> StrategyResult:
    opportunity = {"symbol": "BTC-USD", "strategy": name, "score": 0.5, "expected_return": 0.1}
    return StrategyResult(name, "ok", tuple(opportunity for _ in range(found)), 5)


def test_created_scan_is_readable_with_totals_and_no_expiry(store: ScanStore, raw: Raw) -> None:
    """A new scan is readable at once with total > 0 and its key does not expire."""
    scan = new_scan()
    create(store, scan)
    snap = store.read(scan.scan_id)
    assert snap is not None
    assert (ScanStatus.SCANNING, 2, 0) == (snap.status, snap.total, snap.completed)
    assert -1 == raw.ttl(Keys().scan(scan.scan_id))


def kill_clients(raw: Raw) -> int:
    """Every node drops every client but this one; how many it dropped."""
    if isinstance(raw, redis.RedisCluster):
        killed = raw.client_kill_filter(_type="normal", skipme=True, target_nodes="all")
        return sum(killed.values()) if isinstance(killed, dict) else int(killed)
    return int(raw.client_kill_filter(_type="normal", skipme=True))


def test_a_read_survives_the_server_closing_its_connection(store: ScanStore, raw: Raw) -> None:
    """Redis dropped every client (as on a restart): the next read still answers."""
    scan = new_scan()
    create(store, scan)
    assert store.read(scan.scan_id) is not None  # this thread's connection is open now
    assert kill_clients(raw) >= 1
    again = store.read(scan.scan_id)
    assert again is not None
    assert scan.scan_id == again.scan_id
    assert not store.breaker.is_open


def test_registering_twice_joins_the_first(store: ScanStore) -> None:
    """The same registration sent again (its answer timed out) joins what the first made."""
    scan = new_scan()
    first, again = store.register(scan, LEASE_MS), store.register(scan, LEASE_MS)
    assert (("created", scan.scan_id), ("joined", scan.scan_id)) == (
        (first.kind, first.scan_id),
        (again.kind, again.scan_id),
    )


def test_strategy_result_is_recorded_once(store: ScanStore) -> None:
    """Recording the same strategy twice counts it once."""
    scan = new_scan()
    create(store, scan)
    first = store.record_strategy(scan.scan_id, scan.epoch, result("momentum", 2), now_iso())
    again = store.record_strategy(scan.scan_id, scan.epoch, result("momentum", 2), now_iso())
    assert isinstance(first, Recorded)
    assert isinstance(again, Recorded)
    assert ((1, 2), (1, 2)) == ((first.completed, first.found), (again.completed, again.found))
    assert first.updated_at == again.updated_at


def test_writes_with_a_stale_epoch_are_fenced(store: ScanStore, raw: Raw) -> None:
    """A writer whose epoch is not the scan's changes nothing."""
    scan = new_scan()
    create(store, scan)
    raw.hset(Keys().scan(scan.scan_id), "epoch", 2)
    fenced = store.record_strategy(scan.scan_id, scan.epoch, result("momentum"), now_iso())
    assert Written.FENCED is fenced
    snap = store.read(scan.scan_id)
    assert snap is not None
    finished = snap.__class__(**{**snap.__dict__, "status": ScanStatus.COMPLETE, "results": b"{}"})
    assert Written.FENCED is store.finish(finished, scan.epoch, PARAMS.digest(), 60)
    assert (0, ScanStatus.SCANNING) == (snap.completed, store.read(scan.scan_id).status)  # type: ignore[union-attr]


def test_finish_writes_results_and_one_ttl_for_every_key(store: ScanStore, raw: Raw) -> None:
    """The terminal step stores results, flips status, and expires scan and dedup together."""
    scan = new_scan()
    create(store, scan)
    for name in PARAMS.strategies:
        store.record_strategy(scan.scan_id, scan.epoch, result(name), now_iso())
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
    assert None is store.finish(final, scan.epoch, PARAMS.digest(), 120)
    stored = store.read_partial(scan.scan_id).snapshot
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
    assert None is raw.zscore(keys.running(shard_of_scan(scan.scan_id)), scan.scan_id)


def test_a_scan_with_a_pending_cancel_is_never_joined(store: ScanStore) -> None:
    """An identical request after a cancel request registers a new scan."""
    first = new_scan()
    create(store, first)
    assert ScanStatus.SCANNING == store.request_cancel(first.scan_id, "alice")
    second = store.register(new_scan(), LEASE_MS)
    assert ("created", True) == (second.kind, second.scan_id != first.scan_id)


def test_a_complete_scan_is_reused_unless_refreshing(store: ScanStore) -> None:
    """Once complete, an identical request reuses it; force_refresh registers a new one."""
    scan = new_scan()
    create(store, scan)
    snap = store.read(scan.scan_id)
    assert snap is not None
    final = replace(snap, status=ScanStatus.COMPLETE, completed_at=now_iso(), results=b"{}")
    assert None is store.finish(final, scan.epoch, PARAMS.digest(), 60)
    reused = store.register(new_scan(), LEASE_MS)
    fresh = store.register(new_scan(), LEASE_MS, force_refresh=True)
    assert (("reused", scan.scan_id), "created") == ((reused.kind, reused.scan_id), fresh.kind)


def test_the_active_limit_registers_nothing_over_it(store: ScanStore, raw: Raw) -> None:
    """At the user's limit a registration is refused and writes no key."""
    create(store, new_scan(params=ScanParams(("momentum",), ("A",), "1h")))
    before = sorted(raw.keys("*"))
    refused = store.register(new_scan(), LEASE_MS, max_active=1)
    assert ("limited", before) == (refused.kind, sorted(raw.keys("*")))


def test_a_finished_scan_never_changes(store: ScanStore) -> None:
    """A second finish, even by the same owner, leaves the stored results as they were."""
    scan = new_scan()
    create(store, scan)
    snap = store.read(scan.scan_id)
    assert snap is not None
    final = replace(snap, status=ScanStatus.COMPLETE, completed_at=now_iso(), results=b"[1]")
    assert None is store.finish(final, scan.epoch, PARAMS.digest(), 60)
    assert None is store.finish(replace(final, results=b"[2]"), scan.epoch, PARAMS.digest(), 60)
    stored = store.read_partial(scan.scan_id).snapshot
    assert stored is not None
    assert b"[1]" == stored.results


def test_cancel_request_only_for_the_owner_user(store: ScanStore) -> None:
    """Another user's cancel is answered as not found and changes nothing."""
    scan = new_scan()
    create(store, scan)
    assert None is store.request_cancel(scan.scan_id, "bob")
    assert ScanStatus.SCANNING == store.request_cancel(scan.scan_id, "alice")
    recorded = store.record_strategy(scan.scan_id, scan.epoch, result("momentum"), now_iso())
    assert isinstance(recorded, Recorded)
    assert recorded.cancel_requested


def test_list_scans_newest_first_and_forgets_expired(store: ScanStore, raw: Raw) -> None:
    """A user's list is newest first, excludes others' scans and prunes expired ids."""
    older, newer, gone = (new_scan(params=ScanParams(("momentum",), (s,), "1h")) for s in "abc")
    for scan in (older, newer, gone):
        store.register(scan, LEASE_MS)
    create(store, new_scan("bob"))
    raw.delete(Keys().scan(gone.scan_id))
    listed = [s.scan_id for s in store.list_scans("alice", 10)]
    assert [newer.scan_id, older.scan_id] == listed
    assert None is raw.zscore(Keys().user_scans("alice"), gone.scan_id)


def test_strategy_results_round_trip(store: ScanStore) -> None:
    """Per-strategy results come back as they were written (for resuming a scan)."""
    scan = new_scan()
    create(store, scan)
    written = result("momentum", 3)
    store.record_strategy(scan.scan_id, scan.epoch, written, now_iso())
    assert True is store.release(scan.scan_id, scan.epoch)
    resumed = store.claim(scan.scan_id, "heir:2", LEASE_MS, "heir")
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


def test_embedded_redis_runs_in_a_directory_with_spaces_and_quotes(tmp_path: Path) -> None:
    """A data dir such as macOS's `Application Support` works, on a port and on a socket."""
    for port in (free_port(), None):
        server = EmbeddedRedis(tmp_path / f'Application Support "{port}"', port=port).start()
        try:
            assert True is redis.Redis.from_url(server.url).ping()
        finally:
            server.stop()
        written = {p.name for p in (tmp_path / f'Application Support "{port}"').iterdir()}
        assert written & {"appendonly.aof", "appendonlydir"}  # its data went where it was told


def test_the_users_index_expires_with_the_last_of_their_scans(store: ScanStore, raw: Raw) -> None:
    """While a scan of the user runs the index stays; once all are finished it expires
    with the last of them."""
    one, two = (new_scan(params=ScanParams(("momentum",), (s,), "1h")) for s in "ab")
    create(store, one)
    create(store, two)
    index = Keys().user_scans("alice")
    for scan, ttl in ((one, 120), (two, 60)):
        snap = store.read(scan.scan_id)
        assert snap is not None
        final = replace(snap, status=ScanStatus.CANCELLED, completed_at=now_iso(), results=b"{}")
        assert -1 == raw.ttl(index)  # a scan still runs
        assert None is store.finish(final, scan.epoch, scan.params.digest(), ttl)
    assert 119 <= raw.ttl(index) <= 120


def test_strategy_states_are_written_with_results_and_by_their_owner_only(
    store: ScanStore, raw: Raw
) -> None:
    """A new scan's strategies are pending; the owner writes starts and outcomes (with
    the result, in one step); a stale epoch writes nothing; the final states stay."""
    scan = new_scan()
    create(store, scan)

    def states() -> dict[str, str]:
        snap = store.read(scan.scan_id)
        assert snap is not None
        return dict(snap.states)

    assert {"momentum": "pending", "rsi_reversal": "pending"} == states()
    both_run: StrategyStates = (("momentum", "running"), ("rsi_reversal", "running"))
    assert None is store.write_states(scan.scan_id, scan.epoch, both_run)
    assert {"momentum": "running", "rsi_reversal": "running"} == states()
    one_done: StrategyStates = (("momentum", "ok"), ("rsi_reversal", "running"))
    recorded = store.record_strategy(
        scan.scan_id, scan.epoch, result("momentum"), now_iso(), states=one_done
    )
    assert isinstance(recorded, Recorded)
    assert {"momentum": "ok", "rsi_reversal": "running"} == states()
    stale = replace(scan.epoch, tag="someone-else")
    assert Written.FENCED is store.write_states(scan.scan_id, stale, both_run)
    snap = store.read(scan.scan_id)
    assert snap is not None
    final_states: StrategyStates = (("momentum", "ok"), ("rsi_reversal", "cancelled"))
    final = replace(
        snap, status=ScanStatus.CANCELLED, results=b"{}", completed_at=now_iso(), completed=1
    )
    assert None is store.finish(replace(final, states=final_states), scan.epoch, "d", 60)
    assert {"momentum": "ok", "rsi_reversal": "cancelled"} == states()
    assert None is store.write_states(scan.scan_id, scan.epoch, both_run)  # its own, late
    assert {"momentum": "ok", "rsi_reversal": "cancelled"} == states()
    raw.delete(Keys().scan(scan.scan_id))
    assert Written.FORGOTTEN is store.write_states(scan.scan_id, scan.epoch, both_run)


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[ClusterDeployment]:
    """A cluster of this test alone (three masters), one of which it restarts."""
    cluster = ClusterDeployment(tmp_path / "cluster", replicas=0).start()
    yield cluster
    cluster.stop()


def test_a_cluster_master_restarted_empty_is_a_change_not_a_miss(
    own_cluster: ClusterDeployment,
) -> None:
    """A master restarts in place without its data, quicker than the cluster marks
    it failed: the store notices the new process on its first new connection, so a
    read of the scan it lost is an outage until the owners wrote it back, never
    "no such scan"."""
    store = open_store(own_cluster.url, "oppscan:", 0.5, restart_gate=30.0)
    scan = new_scan()
    create(store, scan)
    assert False is store.server_restarted()  # learns the primaries
    assert store.read(scan.scan_id) is not None
    master = own_cluster.master_of(Keys().scan(scan.scan_id))
    master.kill()
    master.start()  # the same port and cluster config, no data
    own_cluster.wait_healthy()  # serving again before the store asks it anything
    assert "store_restarted" == first_answer_after_restart(store, scan.scan_id)
    assert True is store.server_restarted()


def first_answer_after_restart(store: ScanStore, scan_id: str) -> str:
    """Read until the store answers other than "unreachable" (the dropped connection
    trips the breaker; the probe, as the steward's would, closes it)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            found = store.read(scan_id)
        except StoreUnavailable as exc:
            if exc.reason == "store_restarted":
                return exc.reason
            store.probe()
            time.sleep(0.02)
            continue
        return f"answered {found}"
    return "no answer"


def test_a_cluster_not_formed_yet_is_an_outage(tmp_path: Path) -> None:
    """Its nodes answer, in cluster mode, but no slot is assigned yet: the store is
    unavailable (503, and the probe says not yet), then serves once it is formed."""
    cluster = ClusterDeployment(tmp_path / "cluster", replicas=0)
    cluster.start_nodes()
    try:
        store = open_store(cluster.url, "oppscan:", 0.5)
        assert False is store.probe()
        with pytest.raises(StoreUnavailable):
            store.read(Keys().new_scan_id("alice"))
        cluster.create()
        poll_until(store.probe, 10)
        assert None is store.read(Keys().new_scan_id("alice"))
    finally:
        cluster.stop()
