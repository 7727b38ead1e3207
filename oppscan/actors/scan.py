"""ScanActor: owns one running scan, its strategies and its durable state.

The decisions are `ScanLifecycle`'s; this actor performs them. Strategies run
on the worker's strategy pool and report back by message. Every result is
written through to Redis (fenced by epoch) on the actor's own thread, and only
then published to the scan's `SnapshotCell`, which request threads read without
asking the actor. The actor holds the cell across the write and the
publication: a poll answered here never shows more than Redis holds, and a poll
that reaches this worker after another worker read Redis never shows less.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Protocol, TypeVar

import pykka

from oppscan import logs
from oppscan.actors.feed import Feeds, StrategyFeed
from oppscan.actors.lifecycle import Phase, ScanLifecycle, Step
from oppscan.actors.proxies import ScanActorProxy, scan_proxy
from oppscan.actors.strategy_run import ScanFailure
from oppscan.actors.views import Finished, SnapshotCell
from oppscan.logs import get_logger
from oppscan.metrics import LEASES, SCANS_FINISHED, STRATEGY_SECONDS
from oppscan.model import (
    Epoch,
    ScanJob,
    ScanSnapshot,
    ScanStatus,
    StrategyResult,
    initial_states,
    millis_between,
    now_iso,
    plus_seconds,
)
from oppscan.results import build_results
from oppscan.storage import Recorded, Restored, Store, StoreUnavailable, Written

T = TypeVar("T")

MIN_RETRY = 0.05
MAX_RETRY = 2.0


class Registrar(Protocol):
    """What a scan tells its registry (events, never asked)."""

    def scan_finished(self, finished: Finished) -> Any: ...

    def scan_released(self, scan_id: str, epoch: Epoch) -> Any: ...


@dataclass(frozen=True)
class ScanDeps:
    """What every scan actor of a worker shares."""

    store: Store
    feeds: Feeds
    registrar: Registrar
    result_ttl: int
    results_cap: int
    schedule: Callable[[float, Callable[[], Any]], Any]
    worker: str = "local"
    lease_ms: int = 10_000
    holds_lease: Callable[[str, Epoch], bool] = lambda _scan_id, _epoch: True


def schedule_with_timer(delay: float, action: Callable[[], Any]) -> threading.Timer:
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()
    return timer


def first_snapshot(job: ScanJob) -> ScanSnapshot:
    """What a scan shows when its actor starts: what Redis already holds."""
    return ScanSnapshot(
        scan_id=job.scan_id,
        user=job.user,
        status=ScanStatus.SCANNING,
        total=len(job.params.strategies),
        completed=len(job.done),
        found=sum(len(r.opportunities) for r in job.done),
        created_at=job.created_at,
        updated_at=job.updated_at,
        params=job.params,
        states=job.states or initial_states(job.params.strategies, job.done),
    )


class ScanActor(pykka.ThreadingActor):
    def __init__(self, job: ScanJob, deps: ScanDeps, cell: SnapshotCell) -> None:
        super().__init__()
        self._job = job
        self._deps = deps
        self._cell = cell
        self._log = get_logger("oppscan.scan").bind(
            scan_id=job.scan_id, epoch=str(job.epoch), user=logs.USER(job.user)
        )
        self._life = ScanLifecycle(job)
        self._feed: StrategyFeed | None = None  # once started
        self._futures: dict[str, Future[StrategyResult | ScanFailure]] = {}
        self._stopped = threading.Event()
        self._final: ScanSnapshot | None = None  # built once: a retried write sends the same
        self._retry_delay = MIN_RETRY
        self._retry_pending = False
        self._flush_pending = False
        self._snapshot = first_snapshot(job)

    # -- lifecycle -------------------------------------------------------

    def on_start(self) -> None:
        try:
            self._start_strategies()
        except Exception as exc:
            # pykka stops an actor whose on_start raised without calling on_failure.
            self.on_failure(type(exc), exc, exc.__traceback__)
            self.actor_ref.stop(block=False)

    def _start_strategies(self) -> None:
        installed = self._deps.feeds.strategies
        to_run = self._life.to_run()
        names = [name for name in to_run if name in installed]
        self._feed = self._deps.feeds.for_scan(self._job.scan_id, self._job.params, names)
        for name in to_run:
            if name in installed:
                self._submit(name)
            else:  # resumed on a worker without this plugin: say so, and go on
                missing = "strategy is not installed on this worker"
                self._life.reported(StrategyResult(name, "error", (), 0, missing))
        self._log.info("scan_owned", remaining=len(self._futures), resumed=len(self._life.durable))
        self._life.begin(self._job.cancel_requested)
        self._run()

    def on_stop(self) -> None:
        self._cancel_futures()
        self._cell.disown()
        self._stopped.set()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """A bug stopped this actor: record the scan as failed while it is still
        ours, rather than leave it to be resumed (and fail again) elsewhere."""
        self._log.error("scan_actor_failed", failure_reason=repr(exception_value))
        self._life.crashed()
        try:
            self._run()
        except Exception:
            self._life.give_up()
            self._run()
        self.on_stop()

    def _submit(self, name: str) -> None:
        assert self._feed is not None
        proxy = scan_proxy(self.actor_ref)
        future = self._feed.submit(name, on_start=lambda: _tell_started(proxy, name))
        future.add_done_callback(lambda f: _report(proxy, name, f))
        self._futures[name] = future
        self._life.submitted(name)

    # -- asked -----------------------------------------------------------

    def cancel(self) -> None:
        """Stop at the next strategy boundary and record the scan as cancelled.

        The cancel is in Redis already; readers see its outcome through the cell.
        """
        self._life.cancel()
        self._run()

    def release(self) -> threading.Event:
        """Hand the scan off (worker stopping) at a strategy boundary.

        Strategies not started are dropped; running ones finish and are saved;
        then the lease is freed so another worker resumes at once. The event is
        set when this actor has stopped.
        """
        dropped = [name for name, future in self._futures.items() if future.cancel()]
        self._life.release(dropped)
        self._run()
        return self._stopped

    # -- told ------------------------------------------------------------

    def release_now(self) -> None:
        """The hand-off ran out of time: free the lease without waiting for strategies."""
        self._life.release_now()
        self._run()

    def strategy_started(self, name: str) -> None:
        """A strategy began to run. The starts that arrive together are written
        together: the flush is queued behind them."""
        self._life.started(name)
        if self._life.starts_unwritten and not self._flush_pending:
            self._flush_pending = True
            with contextlib.suppress(pykka.ActorDeadError):
                scan_proxy(self.actor_ref).flush_starts.defer()

    def flush_starts(self) -> None:
        self._flush_pending = False
        self._life.flush()
        self._run()

    def strategy_done(self, outcome: StrategyResult | ScanFailure) -> None:
        if isinstance(outcome, ScanFailure):
            self._log.warning(
                "scan_failed", strategy=outcome.strategy, failure_reason=outcome.error
            )
            self._life.failed(outcome.strategy, outcome.error)
        else:
            STRATEGY_SECONDS.labels(outcome.name, outcome.status).observe(outcome.duration_ms / 1e3)
            self._life.reported(outcome)
        self._run()

    def strategy_lost(self, name: str, error: str) -> None:
        """The process running `name` died (an OOM kill): run it once more, then give up."""
        if self._life.process_died(name, error):
            self._log.warning("strategy_resubmitted", strategy=name, failure_reason=error)
            self._submit(name)
        self._run()

    def lost(self) -> None:
        """Told by the registry: another epoch owns the scan now."""
        self._life.fenced()
        self._run()

    def restore(self) -> None:
        """Told by the registry: Redis forgot this scan's record, or answers again
        after an outage and may have lost its last writes; write it back."""
        self._retry_pending = False
        self._life.store_back()
        self._life.record_forgotten()
        self._run()

    def retry_writes(self) -> None:
        self._retry_pending = False
        self._life.store_back()
        waiting = len(self._life.unsaved) + (self._life.phase is Phase.CLOSING)
        self._run()
        if waiting and not self._retry_pending:
            self._log.info("writes_flushed", writes=waiting)

    # -- performing the lifecycle's steps ----------------------------------------

    def _run(self) -> None:
        """Take the lifecycle's steps until it waits for an event."""
        while (step := self._life.next_step()) is not Step.WAIT:
            try:
                self._take(step)
            except StoreUnavailable as exc:
                self._log.warning("scan_write_deferred", failure_reason=exc.reason)
                self._life.write_failed(maybe_applied=exc.reason == "TimeoutError")
                self._schedule_retry()
            if self._life.phase not in (Phase.RUNNING, Phase.RELEASING):
                self._cancel_futures()

    def _take(self, step: Step) -> None:
        if step is Step.WRITE_RESULT:
            self._write_result()
        elif step is Step.WRITE_STATES:
            self._write_states()
        elif step is Step.WRITE_FINAL:
            self._write_final()
        elif step is Step.RESTORE:
            self._restore()
        elif step is Step.RELEASE_LEASE:
            self._release_lease()
        else:
            self._end()

    def _write_result(self) -> None:
        """Write the oldest unsaved result, then publish the progress it made durable."""
        result = self._life.unsaved[0]
        epoch = self._job.epoch
        states = self._life.states(writing=result)
        with self._cell.writing():
            outcome = self._written(
                lambda: self._deps.store.record_strategy(
                    self._job.scan_id, epoch, result, now_iso(), len(self._life.durable), states
                )
            )
            if not isinstance(outcome, Recorded):
                return self._not_written(outcome)
            self._life.result_written(outcome.cancel_requested)
            self._retry_delay = MIN_RETRY
            self._snapshot = replace(
                self._snapshot,
                completed=max(self._snapshot.completed, outcome.completed),
                found=max(self._snapshot.found, outcome.found),
                updated_at=max(self._snapshot.updated_at, outcome.updated_at),
                states=states,
            )
            self._cell.publish(self._snapshot)
        return None

    def _write_states(self) -> None:
        """Write which strategies run now, then publish them."""
        states = self._life.states()
        scan_id, epoch = self._job.scan_id, self._job.epoch
        with self._cell.writing():
            outcome = self._written(lambda: self._deps.store.write_states(scan_id, epoch, states))
            if outcome is not None:
                return self._not_written(outcome)
            self._life.states_written()
            self._snapshot = replace(self._snapshot, states=states)
            self._cell.publish(self._snapshot)
        return None

    def _write_final(self) -> None:
        final = self._final = self._final or self._final_snapshot()
        digest = self._job.params.digest()
        ttl = self._deps.result_ttl
        with self._cell.writing():
            outcome = self._written(
                lambda: self._deps.store.finish(final, self._job.epoch, digest, ttl)
            )
            if outcome is not None:
                return self._not_written(outcome)
            self._published_final()
        return None

    def _published_final(self) -> None:
        """Called inside `writing()`, once the final write is surely in Redis."""
        final = self._final = self._final or self._final_snapshot()
        self._snapshot = final
        self._cell.publish(final)
        self._life.final_written()
        SCANS_FINISHED.labels(final.status.value).inc()
        self._log.info(
            "scan_finished",
            status=final.status.value,
            completed=final.completed,
            opportunities=final.found,
            duration_ms=millis_between(self._job.created_at, final.completed_at or now_iso()),
        )

    def _not_written(self, outcome: Written) -> None:
        """Called inside `writing()`: fenced, readers go to Redis; forgotten, we write back."""
        if outcome is Written.FENCED:
            self._cell.give_up()
            self._log.warning("scan_fenced", failure_reason="epoch_superseded")
            self._life.fenced()
        else:
            self._life.record_forgotten()

    def _restore(self) -> None:
        """Write back what Redis lost; a record that is gone is made anew only while
        our lease surely held."""
        states = self._life.states()
        with self._cell.writing():
            restored = self._written(
                lambda: self._deps.store.restore(
                    self._job,
                    self._deps.worker,
                    tuple(self._life.durable.values()),
                    self._snapshot.updated_at,
                    self._deps.lease_ms,
                    recreate=self._deps.holds_lease(self._job.scan_id, self._job.epoch),
                    states=states,
                )
            )
            if restored is Restored.WRITTEN:
                self._snapshot = replace(self._snapshot, states=states)
                self._cell.publish(self._snapshot)
        if restored is Restored.WRITTEN:
            self._log.info("scan_record_restored", completed=len(self._life.durable))
            self._life.restored()
        elif restored is Restored.FINISHED and self._life.phase is Phase.CLOSING:
            with self._cell.writing():  # our final write had landed; its answer was lost
                self._published_final()
        else:
            self._log.warning("scan_fenced", failure_reason=f"restore_{restored.value}")
            self._life.fenced()

    def _release_lease(self) -> None:
        released = self._deps.store.release(self._job.scan_id, self._job.epoch)
        if released is Written.FORGOTTEN:
            self._life.record_forgotten()  # write it back, then hand it off
            return
        self._log.info("lease_released", handed_off=released, completed=len(self._life.durable))
        LEASES.labels("released").inc()
        self._life.lease_released()

    def _end(self) -> None:
        """Tell the registry why this owner ends, then stop."""
        self._life.stop_taken()
        epoch = self._job.epoch
        if self._life.phase is Phase.FINISHED:
            results = tuple(self._life.durable.values())
            digest, ttl = self._job.params.digest(), self._deps.result_ttl
            finished = Finished(self._job, self._snapshot, results, digest, ttl)
            self._deps.registrar.scan_finished(finished)
        else:
            self._cell.disown()
            self._deps.registrar.scan_released(self._job.scan_id, epoch)
        self.actor_ref.stop(block=False)

    def _written(self, write: Callable[[], T]) -> T:
        """Run a write while holding the cell; a timeout may have been applied by
        Redis all the same, so the cell stops answering until the next publication."""
        try:
            return write()
        except StoreUnavailable as exc:
            if exc.reason == "TimeoutError":
                self._cell.withhold()
            raise

    def _final_snapshot(self) -> ScanSnapshot:
        assert self._life.outcome is not None
        status, error = self._life.outcome
        # Never before the last progress a client saw, whatever this host's clock says.
        completed_at = max(now_iso(), self._snapshot.updated_at)
        results = build_results(
            self._job.scan_id,
            status,
            self._job.params,
            self._life.durable,
            self._job.started_at,
            completed_at,
            self._deps.results_cap,
            error,
            self._feed.market_summary() if self._feed is not None else None,
        )
        return replace(
            self._snapshot,
            status=status,
            completed=len(self._life.durable),
            updated_at=completed_at,
            completed_at=completed_at,
            error=error,
            results=results,
            expires_at=plus_seconds(completed_at, self._deps.result_ttl),
            states=self._life.final_states(),
        )

    def _cancel_futures(self) -> None:
        for future in self._futures.values():
            future.cancel()
        if self._feed is not None:
            self._feed.cancel()

    def _schedule_retry(self) -> None:
        if self._retry_pending:
            return
        self._retry_pending = True
        proxy = scan_proxy(self.actor_ref)
        self._deps.schedule(self._retry_delay, lambda: _tell_retry(proxy))
        self._retry_delay = min(MAX_RETRY, self._retry_delay * 2)


def _report(proxy: ScanActorProxy, name: str, future: Future[StrategyResult | ScanFailure]) -> None:
    if future.cancelled():
        return
    # The scan may have finished or stopped meanwhile; then nobody needs the news.
    with contextlib.suppress(pykka.ActorDeadError):
        lost = future.exception()  # run_strategy never raises: its process died
        if lost is None:
            proxy.strategy_done.defer(future.result())
        else:
            proxy.strategy_lost.defer(name, f"{type(lost).__name__}: {lost}")


def _tell_started(proxy: ScanActorProxy, name: str) -> None:
    with contextlib.suppress(pykka.ActorDeadError):
        proxy.strategy_started.defer(name)


def _tell_retry(proxy: ScanActorProxy) -> None:
    with contextlib.suppress(pykka.ActorDeadError):
        proxy.retry_writes.defer()
