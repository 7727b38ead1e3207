"""Property test of the stored scan state machine on a real Redis.

Any interleaving of strategy completions (by the owner or by a stale owner),
cancel requests, takeovers and finishes keeps guarantee 3: progress never
decreases, never exceeds the total, the total is set from the start, and
`complete` means every strategy completed.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from oppscan.model import (
    Epoch,
    ScanParams,
    ScanStatus,
    StrategyResult,
    new_epoch_tag,
    now_iso,
)
from oppscan.storage import Keys, NewScan, Recorded, ScanStore, open_store
from oppscan.storage.keys import shard_of_scan

NAMES = ("a", "b", "c", "d")
PARAMS = ScanParams(NAMES, ("X",), "1h")


class StoredScan(RuleBasedStateMachine):
    url = ""

    @initialize()
    def create(self) -> None:
        self.store: ScanStore = open_store(self.url, "prop:", 0.5)
        self.raw = redis.Redis.from_url(self.url)
        self.user = secrets.token_hex(8)  # a user of its own: no earlier example's scan to join
        self.scan_id = self.store.new_scan_id(self.user)
        scan = NewScan(self.scan_id, self.user, PARAMS, now_iso(), "w:1")
        self.store.register(scan, 60_000)
        self.epoch = scan.epoch
        self.stale = Epoch(0, "stale")
        self.recorded: set[str] = set()
        self.last_completed = 0
        self.finished = False

    @rule(name=st.sampled_from(NAMES), stale=st.booleans())
    def complete_strategy(self, name: str, stale: bool) -> None:
        epoch = self.stale if stale else self.epoch
        done = self.store.record_strategy(
            self.scan_id, epoch, StrategyResult(name, "ok", (), 1), now_iso()
        )
        accepted = not stale and not self.finished
        assert accepted == isinstance(done, Recorded)
        if accepted:
            self.recorded.add(name)

    @rule()
    def request_cancel(self) -> None:
        self.store.request_cancel(self.scan_id, self.user)

    @precondition(lambda self: not self.finished)
    @rule()
    def take_over(self) -> None:
        """The owner's lease lapses and another worker claims the scan."""
        self.raw.zadd(Keys("prop:").running(shard_of_scan(self.scan_id)), {self.scan_id: 0})
        self.raw.hset(Keys("prop:").scan(self.scan_id), "lease", 0)
        job = self.store.claim(self.scan_id, "w:2", 60_000, new_epoch_tag())
        assert job is not None
        assert self.epoch.number + 1 == job.epoch.number
        assert self.recorded == {r.name for r in job.done}
        self.stale, self.epoch = self.epoch, job.epoch

    @precondition(lambda self: not self.finished)
    @rule(status=st.sampled_from([ScanStatus.COMPLETE, ScanStatus.CANCELLED]))
    def finish(self, status: ScanStatus) -> None:
        if status is ScanStatus.COMPLETE and len(self.recorded) < len(NAMES):
            return  # an owner only completes once every strategy is recorded
        snapshot = self.store.read(self.scan_id)
        assert snapshot is not None
        stamp = now_iso()
        final = replace(snapshot, status=status, completed_at=stamp, results=b"{}")
        assert None is self.store.finish(final, self.epoch, PARAMS.digest(), 600)
        self.finished = True

    @invariant()
    def progress_is_honest(self) -> None:
        snapshot = self.store.read_partial(self.scan_id).snapshot
        assert snapshot is not None
        assert len(NAMES) == snapshot.total
        assert self.last_completed <= snapshot.completed <= snapshot.total
        assert len(self.recorded) == snapshot.completed
        if snapshot.status is ScanStatus.COMPLETE:
            assert snapshot.completed == snapshot.total
        if snapshot.status.terminal:
            assert snapshot.results is not None
        self.last_completed = snapshot.completed

    def teardown(self) -> None:
        self.store.close()
        self.raw.close()


def test_stored_scan_state_machine(redis_url: str) -> None:
    """Random interleavings never break honest progress."""
    StoredScan.url = redis_url
    run_state_machine_as_test(
        StoredScan, settings=settings(max_examples=60, stateful_step_count=25, deadline=None)
    )
