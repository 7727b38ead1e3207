"""Leases on a real Redis: claims fence old owners, renewals, hand-offs, takeovers, queueing."""

from __future__ import annotations

import functools
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from oppscan.actors import first_snapshot
from oppscan.model import (
    Epoch,
    ScanParams,
    ScanStatus,
    StrategyResult,
    StrategyStates,
    now_iso,
)
from oppscan.processes import free_port
from oppscan.runtime import Runtime, start_runtime, stop_runtime
from oppscan.service import ScanService
from oppscan.settings import Settings
from oppscan.storage import (
    EmbeddedRedis,
    Keys,
    NewScan,
    Recorded,
    Restored,
    ScanStore,
    StoreUnavailable,
    Written,
    open_store,
)
from oppscan.storage.keys import shard_of_scan
from oppscan.strategies import available_strategies
from tests.support.cluster import raw_client
from tests.support.polling import poll_until

ALICE = functools.partial(Keys().new_scan_id, "alice")

PARAMS = ScanParams(("momentum", "rsi_reversal"), ("BTC-USD",), "1h")
ALL = tuple(sorted(available_strategies()))


Raw = redis.Redis | redis.RedisCluster


@pytest.fixture
def store(store_url: str) -> ScanStore:
    return open_store(store_url, "oppscan:", 0.5)


@pytest.fixture
def raw(store_url: str) -> redis.Redis | redis.RedisCluster:
    return raw_client(store_url)


def owned(
    store: ScanStore, lease_ms: int, owner: str = "a:1", user: str = "alice"
) -> tuple[str, Epoch]:
    """A new scan owned by `owner`, with a params of its own (no dedup between them)."""
    params = ScanParams(ALL, (secrets.token_hex(8),), "1h")
    scan = NewScan(store.new_scan_id(user), user, params, now_iso(), owner)
    assert "created" == store.register(scan, lease_ms).kind
    return scan.scan_id, scan.epoch


def poll(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    poll_until(predicate, timeout)


def test_live_leases_are_not_claimable(store: ScanStore) -> None:
    """A scan whose lease runs is neither listed nor claimable."""
    scan_id, _ = owned(store, 60_000)
    assert [] == store.claimable(10)
    assert None is store.claim(scan_id, "b:2", 60_000, "b")


def test_a_lapsed_lease_is_claimed_under_a_new_epoch_that_fences_the_old_owner(
    store: ScanStore,
) -> None:
    """The claimant gets epoch 2 and the durable results; epoch 1 can no longer write."""
    scan_id, first = owned(store, 1)
    done = StrategyResult("momentum", "ok", (), 3)
    store.record_strategy(scan_id, first, done, now_iso())
    poll(lambda: store.claimable(10) == [scan_id])  # the 1 ms lease lapses on Redis's clock
    job = store.claim(scan_id, "b:2", 60_000, "b")
    assert job is not None
    assert (Epoch(2, "b"), (done,)) == (job.epoch, job.done)
    late = StrategyResult("rsi_reversal", "ok", (), 1)
    assert Written.FENCED is store.record_strategy(scan_id, first, late, now_iso())
    assert None is store.claim(scan_id, "c:3", 60_000, "c")


def test_a_claim_sent_again_answers_the_claim_it_made(store: ScanStore) -> None:
    """The answer of a claim was lost (a timeout): sent again with its tag, it gets the scan."""
    scan_id, _ = owned(store, 1)
    poll(lambda: store.claimable(10) == [scan_id])
    first = store.claim(scan_id, "b:2", 60_000, "b")
    again = store.claim(scan_id, "b:2", 60_000, "b")
    assert first is not None
    assert again is not None
    assert first.epoch == again.epoch
    assert None is store.claim(scan_id, "c:3", 60_000, "c")


def test_a_claim_redis_forgot_is_never_handed_out_again(store: ScanStore, raw: Raw) -> None:
    """Redis loses a claim (its last writes): the next claimant's epoch differs, and the
    forgotten owner's writes are fenced, never mixed with its successor's."""
    scan_id, _ = owned(store, 1)
    poll(lambda: store.claimable(10) == [scan_id])
    before = raw.dump(Keys().scan(scan_id))
    forgotten = store.claim(scan_id, "b:2", 60_000, "b")
    raw.restore(Keys().scan(scan_id), 0, before, replace=True)  # as a crash would
    successor = store.claim(scan_id, "c:3", 60_000, "c")
    assert forgotten is not None
    assert successor is not None
    assert forgotten.epoch.number == successor.epoch.number
    assert forgotten.epoch != successor.epoch
    late = StrategyResult("momentum", "ok", (), 1)
    assert Written.FENCED is store.record_strategy(scan_id, forgotten.epoch, late, now_iso())


def test_a_takeover_keeps_the_records_updated_at(store: ScanStore) -> None:
    """The new owner's first snapshot shows the record's `updated_at`, never an older one."""
    scan = NewScan(ALICE(), "alice", PARAMS, "2026-01-01T00:00:00.000Z", "a:1")
    store.register(scan, 60_000)
    later = "2026-01-01T00:00:05.000Z"
    store.record_strategy(scan.scan_id, scan.epoch, StrategyResult("momentum", "ok", (), 1), later)
    assert True is store.release(scan.scan_id, scan.epoch)
    job = store.claim(scan.scan_id, "b:2", 60_000, "b")
    assert job is not None
    assert later == first_snapshot(job).updated_at


def test_an_owner_writes_back_a_record_redis_lost(store: ScanStore, raw: Raw) -> None:
    """After Redis lost the scan, its owner's write says so, and a restore brings the
    record back with every result the owner holds, and the lease."""
    scan = NewScan(ALICE(), "alice", PARAMS, now_iso(), "a:1")
    store.register(scan, 60_000)
    done = StrategyResult("momentum", "ok", ({"symbol": "X"},), 3)
    store.record_strategy(scan.scan_id, scan.epoch, done, now_iso())
    raw.flushall()
    late = StrategyResult("rsi_reversal", "ok", (), 1)
    assert Written.FORGOTTEN is store.record_strategy(scan.scan_id, scan.epoch, late, now_iso())
    assert Restored.WRITTEN is store.restore(scan.job(), "a:1", (done,), now_iso(), 60_000)
    recorded = store.record_strategy(scan.scan_id, scan.epoch, late, now_iso())
    assert isinstance(recorded, Recorded)
    assert (2, 1) == (recorded.completed, recorded.found)
    assert [] == store.claimable(10)
    assert [scan.scan_id] == [s.scan_id for s in store.list_scans("alice", 10)]


def test_a_restore_never_overwrites_another_owner(store: ScanStore) -> None:
    """A stale owner whose claim Redis did not forget gets no restore."""
    scan_id, first = owned(store, 1)
    poll(lambda: store.claimable(10) == [scan_id])
    assert store.claim(scan_id, "b:2", 60_000, "b") is not None
    job = NewScan(scan_id, "alice", PARAMS, now_iso(), "a:1", first).job()
    assert Restored.FENCED is store.restore(job, "a:1", (), now_iso(), 60_000)


def test_renewal_reports_lost_leases_and_cancel_requests(store: ScanStore) -> None:
    """One round trip renews all leases and says which were lost or asked to cancel."""
    kept, cancelled, taken = owned(store, 1), owned(store, 1), owned(store, 1)
    store.request_cancel(cancelled[0], "alice")
    poll(lambda: len(store.claimable(10)) == 3)
    assert store.claim(taken[0], "b:2", 60_000, "b") is not None
    states = store.renew([kept, cancelled, taken], 60_000)
    assert [(True, False), (True, True), (False, False)] == [
        (s.held, s.cancel_requested) for s in states
    ]
    assert [] == store.claimable(10)


def users_in_every_shard() -> list[str]:
    """One user per shard, in shard order."""
    keys, found = Keys(), {}
    for n in range(10_000):
        found.setdefault(keys.shard_of_user(f"user{n}"), f"user{n}")
        if len(found) == keys.shards:
            return [found[shard] for shard in range(keys.shards)]
    raise AssertionError("some shard has no user")


def test_claims_and_renewals_reach_every_shard(store: ScanStore) -> None:
    """Scans of users in all 16 shards (over all masters of a cluster): every lapsed
    lease is found and every held one renewed, in the same calls."""
    users = users_in_every_shard()
    lapsing = [owned(store, 1, user=user) for user in users]
    queued = []
    for user in users:
        scan = NewScan(store.new_scan_id(user), user, PARAMS, now_iso(), None)
        assert "created" == store.register(scan, 60_000).kind
        queued.append(scan.scan_id)
    poll(lambda: len(store.claimable(100)) == 32)
    assert {sid for sid, _ in lapsing} | set(queued) == set(store.claimable(100))
    assert set(queued) == set(store.claimable(100)[16:])  # lapsed leases first
    states = store.renew(lapsing, 60_000)
    assert [sid for sid, _ in lapsing] == [s.scan_id for s in states]
    assert all(s.held for s in states)
    assert set(queued) == set(store.claimable(100))


def test_claims_go_oldest_first_over_every_shard(store: ScanStore) -> None:
    """Queued scans are claimed in the order they came, whatever their shards: a
    few claims at a time take the oldest of all, not the first shards' first."""
    users = users_in_every_shard()[::-1]  # the last shard's user first
    queued = []
    for user in users:
        scan = NewScan(store.new_scan_id(user), user, PARAMS, now_iso(), None)
        store.register(scan, 60_000)
        queued.append(scan.scan_id)
        time.sleep(0.002)  # one creation time (ms) each: the order is theirs, not a tie
    assert queued[:3] == store.claimable(3)
    assert queued == store.claimable(100)


def test_an_id_outside_the_users_shard_is_refused(store: ScanStore) -> None:
    """Its keys would not share a slot with the user's: a bug, raised at once."""
    users = users_in_every_shard()
    scan = NewScan(store.new_scan_id(users[1]), users[0], PARAMS, now_iso(), "a:1")
    with pytest.raises(ValueError, match="shard"):
        store.register(scan, 60_000)


def test_renewal_says_when_redis_forgot_a_claim(store: ScanStore, raw: Raw) -> None:
    """A lease whose record Redis lost is reported forgotten, not lost to another owner."""
    scan = owned(store, 60_000)
    raw.delete(Keys().scan(scan[0]))
    [state] = store.renew([scan], 60_000)
    assert (False, True) == (state.held, state.forgotten)


def test_released_scan_is_claimable_at_once(store: ScanStore) -> None:
    """A hand-off makes the scan claimable without waiting for the lease to lapse."""
    scan_id, epoch = owned(store, 60_000)
    assert True is store.release(scan_id, epoch)
    assert [scan_id] == store.claimable(10)
    job = store.claim(scan_id, "b:2", 60_000, "b")
    assert job is not None
    assert 2 == job.epoch.number


def test_queued_scan_is_claimed_and_starts_scanning(store: ScanStore, store_url: str) -> None:
    """A queued scan has epoch 0 and no owner until a worker claims it."""
    scan_id = ALICE()
    store.register(NewScan(scan_id, "alice", PARAMS, now_iso(), None), 60_000)
    snapshot = store.read(scan_id)
    assert snapshot is not None
    assert (ScanStatus.QUEUED, 2) == (snapshot.status, snapshot.total)
    assert [scan_id] == store.claimable(10)
    job = store.claim(scan_id, "b:2", 60_000, "b")
    assert job is not None
    assert Epoch(1, "b") == job.epoch
    assert None is raw_client(store_url).zscore(Keys().pending(shard_of_scan(scan_id)), scan_id)


def settings(store_url: str, data_dir: Path, **changes: object) -> Settings:
    base: dict[str, object] = {
        "redis_url": store_url,
        "data_dir": data_dir,
        "synthetic_latency_ms": 20.0,
        "lease_ttl": 1.0,
    }
    return Settings(**{**base, **changes})  # type: ignore[arg-type]


@pytest.fixture
def runtimes(store_url: str, data_dir: Path) -> Iterator[list[Runtime]]:
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
    runtimes: list[Runtime], store_url: str, data_dir: Path
) -> None:
    """When the owner stops without a hand-off, another worker claims and completes it."""
    owner = start_runtime(settings(store_url, data_dir))
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
    heir = start_runtime(settings(store_url, data_dir))
    runtimes.append(heir)
    body = json.loads(wait_complete(ScanService(heir), scan_id))
    assert sorted(ALL) == sorted(body["strategy_performance"])
    assert len(ALL) == body["metadata"]["strategies_completed"]
    stop_runtime(owner)


def test_stopping_worker_hands_its_scans_off(
    runtimes: list[Runtime], store_url: str, data_dir: Path
) -> None:
    """A worker that stops releases its leases; the other resumes without a lease timeout."""
    owner = start_runtime(settings(store_url, data_dir, lease_ttl=30.0))
    heir = start_runtime(settings(store_url, data_dir, lease_ttl=30.0))
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
    runtimes: list[Runtime], store_url: str, data_dir: Path
) -> None:
    """Past MAX_SCANS_PER_WORKER a scan is queued, reported so, and run by a worker with room."""
    full = start_runtime(settings(store_url, data_dir, max_scans_per_worker=1))
    runtimes.append(full)
    service = ScanService(full)
    first = service.discover("alice", ScanParams(ALL, ("BTC-USD",), "1h"), False)
    second = service.discover("alice", ScanParams(ALL, ("ETH-USD",), "1h"), False)
    assert (ScanStatus.SCANNING, ScanStatus.QUEUED) == (first.status, second.status)
    assert ScanStatus.QUEUED == service.status("alice", second.scan_id).snapshot.status
    runtimes.append(start_runtime(settings(store_url, data_dir)))
    for scan_id in (first.scan_id, second.scan_id):
        wait_complete(service, scan_id)


def test_cancelling_a_queued_scan(runtimes: list[Runtime], store_url: str, data_dir: Path) -> None:
    """A queued scan that is cancelled finishes as cancelled with nothing run."""
    full = start_runtime(settings(store_url, data_dir, max_scans_per_worker=1))
    runtimes.append(full)
    service = ScanService(full)
    service.discover("alice", ScanParams(ALL, ("BTC-USD",), "1h"), False)
    queued = service.discover("alice", ScanParams(ALL, ("ETH-USD",), "1h"), False).scan_id
    service.cancel("alice", queued)
    poll(lambda: service.status("alice", queued).snapshot.status is ScanStatus.CANCELLED)
    assert 0 == service.status("alice", queued).snapshot.completed


def test_a_scan_finished_meanwhile_is_not_reported_lost(store: ScanStore) -> None:
    """Renewing a lease of a scan its owner just finished is no loss and re-indexes nothing."""
    scan_id, epoch = owned(store, 60_000)
    snapshot = store.read(scan_id)
    assert snapshot is not None
    final = replace(snapshot, status=ScanStatus.COMPLETE, completed_at=now_iso(), results=b"{}")
    assert None is store.finish(final, epoch, PARAMS.digest(), 60)
    assert [(True, False)] == [
        (s.held, s.cancel_requested) for s in store.renew([(scan_id, epoch)], 60_000)
    ]
    assert [] == store.claimable(10)


def test_an_owner_finds_out_when_redis_lost_its_last_writes(store: ScanStore, raw: Raw) -> None:
    """Redis came back from an older copy (it lost the last writes): the owner's next
    write says so, and its write-back restores every result it holds."""
    scan = NewScan(ALICE(), "alice", PARAMS, now_iso(), "a:1")
    store.register(scan, 60_000)
    older = raw.dump(Keys().scan(scan.scan_id))
    done = StrategyResult("momentum", "ok", ({"symbol": "X"},), 3)
    store.record_strategy(scan.scan_id, scan.epoch, done, now_iso(), durable=0)
    raw.restore(Keys().scan(scan.scan_id), 0, older, replace=True)  # the write is lost
    late = StrategyResult("rsi_reversal", "ok", (), 1)
    lost = store.record_strategy(scan.scan_id, scan.epoch, late, now_iso(), durable=1)
    assert Written.FORGOTTEN is lost
    assert Restored.WRITTEN is store.restore(scan.job(), "a:1", (done,), now_iso(), 60_000)
    recorded = store.record_strategy(scan.scan_id, scan.epoch, late, now_iso(), durable=1)
    assert isinstance(recorded, Recorded)
    assert (2, 1) == (recorded.completed, recorded.found)


def test_reads_just_after_redis_changed_are_an_outage(tmp_path: Path) -> None:
    """Redis restarted (here: without its data): for the gate, a running scan or a miss
    is 503, while owners write back; the steward's check says so once; then reads answer."""
    server = EmbeddedRedis(tmp_path / "redis", port=free_port()).start()
    try:
        store = open_store(server.url, "oppscan:", 0.5, restart_gate=1.0)
        scan = NewScan(ALICE(), "alice", PARAMS, now_iso(), "a:1")
        store.register(scan, 60_000)
        assert False is store.server_restarted()
        assert store.read(scan.scan_id) is not None
        server.kill()
        for leftover in (tmp_path / "redis").glob("*.aof"):
            leftover.unlink()
        server.start()
        with pytest.raises(StoreUnavailable):
            store.read(scan.scan_id)
        with pytest.raises(StoreUnavailable):
            store.request_cancel(scan.scan_id, "alice")  # no record yet: not "not found"
        assert (True, False) == (store.server_restarted(), store.server_restarted())

        def answered() -> bool:
            try:
                return store.read(scan.scan_id) is None
            except StoreUnavailable:
                return False

        poll(answered, 5)
        store.close()
    finally:
        server.stop()


def test_a_quick_stop_releases_at_once_without_waiting_for_strategies(
    store_url: str, data_dir: Path
) -> None:
    """A quick stop (Ctrl-C) frees the lease while strategies still run (each takes
    seconds here), so another worker can resume the scan at once."""
    owner = start_runtime(settings(store_url, data_dir, lease_ttl=30.0, synthetic_latency_ms=1000))
    params = ScanParams(ALL, ("BTC-USD", "ETH-USD"), "1h")
    scan_id = ScanService(owner).discover("alice", params, False).scan_id
    started = time.monotonic()
    stop_runtime(owner, quick=lambda: True)
    took = time.monotonic() - started
    client = raw_client(store_url)
    assert (b"", b"scanning") == tuple(client.hmget(Keys().scan(scan_id), "owner", "status"))
    client.close()
    assert took < 1.0


def test_a_write_back_never_moves_updated_at_back(store: ScanStore, raw: Raw) -> None:
    """The owner writes back with an older stamp than Redis holds: the later one stays."""
    scan = NewScan(ALICE(), "alice", PARAMS, now_iso(), "a:1")
    store.register(scan, 60_000)
    later = "2999-01-01T00:00:00.000Z"
    store.record_strategy(scan.scan_id, scan.epoch, StrategyResult("momentum", "ok", (), 1), later)
    older = "2000-01-01T00:00:00.000Z"
    assert Restored.WRITTEN is store.restore(scan.job(), "a:1", (), older, 60_000)
    snapshot = store.read(scan.scan_id)
    assert snapshot is not None
    assert (later, 1) == (snapshot.updated_at, snapshot.completed)


def test_a_write_back_needs_the_lease_to_recreate(store: ScanStore) -> None:
    """A record that is gone is made anew only by an owner whose lease surely held."""
    scan = NewScan(ALICE(), "alice", PARAMS, now_iso(), "a:1")
    restored = store.restore(scan.job(), "a:1", (), now_iso(), 60_000, recreate=False)
    assert (Restored.NOT_OURS, None) == (restored, store.read(scan.scan_id))


def test_a_write_back_after_the_final_write_landed_says_finished(store: ScanStore) -> None:
    """The final write landed but its answer was lost: a write-back reports it finished."""
    scan = NewScan(ALICE(), "alice", PARAMS, now_iso(), "a:1")
    store.register(scan, 60_000)
    snapshot = store.read(scan.scan_id)
    assert snapshot is not None
    final = replace(snapshot, status=ScanStatus.CANCELLED, completed_at=now_iso(), results=b"{}")
    assert None is store.finish(final, scan.epoch, PARAMS.digest(), 60)
    assert Restored.FINISHED is store.restore(scan.job(), "a:1", (), now_iso(), 60_000)


def test_a_write_back_of_a_claim_redis_forgot_leaves_the_queue(store: ScanStore, raw: Raw) -> None:
    """Redis forgot the claim of a queued scan: written back, it is no longer queued."""
    scan_id = ALICE()
    store.register(NewScan(scan_id, "alice", PARAMS, now_iso(), None), 60_000)
    before = raw.dump(Keys().scan(scan_id))
    job = store.claim(scan_id, "b:2", 60_000, "b")
    assert job is not None
    raw.restore(Keys().scan(scan_id), 0, before, replace=True)
    raw.zadd(Keys().pending(shard_of_scan(scan_id)), {scan_id: 1})
    assert Restored.WRITTEN is store.restore(job, "b:2", (), now_iso(), 60_000)
    assert (None, []) == (
        raw.zscore(Keys().pending(shard_of_scan(scan_id)), scan_id),
        store.claimable(10),
    )


def test_a_hand_off_of_a_record_redis_forgot_says_so(store: ScanStore, raw: Raw) -> None:
    """Releasing a lease whose record is gone asks for the write-back, not silence."""
    scan_id, epoch = owned(store, 60_000)
    raw.delete(Keys().scan(scan_id))
    assert Written.FORGOTTEN is store.release(scan_id, epoch)


def test_a_claim_hands_over_the_states_and_a_write_back_keeps_them(
    store: ScanStore, raw: Raw
) -> None:
    """The successor learns which strategies ran (they stay `running`: a state never goes
    back) and a record written back carries the owner's states."""
    scan_id, first = owned(store, 1)
    running: StrategyStates = tuple(
        (name, "running" if name == ALL[0] else "pending") for name in ALL
    )
    assert None is store.write_states(scan_id, first, running)
    poll(lambda: store.claimable(10) == [scan_id])
    job = store.claim(scan_id, "b:2", 60_000, "b")
    assert job is not None
    assert running == job.states
    assert running == first_snapshot(job).states
    raw.delete(Keys().scan(scan_id))
    later: StrategyStates = tuple((name, "running") for name in ALL)
    restored = store.restore(job, "b:2", (), now_iso(), 60_000, states=later)
    assert Restored.WRITTEN is restored
    snap = store.read(scan_id)
    assert snap is not None
    assert later == snap.states
