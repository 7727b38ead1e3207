"""ScanActor: owns one running scan, its strategies and its durable state.

Strategies run on the worker's strategy pool and report back by message. Every
result is written through to Redis (fenced by epoch) on the actor's own thread,
and only then published to the scan's `SnapshotCell`, which request threads
read without asking the actor. The actor holds the cell across the write and
the publication: a poll answered here never shows more than Redis holds, and a
poll that reaches this worker after another worker read Redis never shows less.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection
from concurrent.futures import Future
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Protocol, TypeVar

import pykka

from oppscan.actors.strategy_run import ScanFailure, StrategyPool
from oppscan.actors.views import SnapshotCell
from oppscan.logs import get_logger
from oppscan.metrics import LEASES, SCANS_FINISHED, STRATEGY_SECONDS
from oppscan.model import ScanJob, ScanSnapshot, ScanStatus, StrategyResult, now_iso
from oppscan.results import build_results
from oppscan.storage import Recorded, ScanStore, StoreUnavailable

T = TypeVar("T")

MIN_RETRY = 0.05
MAX_RETRY = 2.0


class Registrar(Protocol):
    """What a scan tells its registry (events, never asked)."""

    def scan_finished(self, snapshot: ScanSnapshot) -> Any: ...

    def scan_released(self, scan_id: str) -> Any: ...


@dataclass(frozen=True)
class ScanDeps:
    """What every scan actor of a worker shares."""

    store: ScanStore
    pool: StrategyPool
    strategies: Collection[str]  # the names installed here
    registrar: Registrar
    result_ttl: int
    results_cap: int
    schedule: Callable[[float, Callable[[], Any]], Any]


def schedule_with_timer(delay: float, action: Callable[[], Any]) -> threading.Timer:
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()
    return timer


def first_snapshot(job: ScanJob) -> ScanSnapshot:
    """What a scan shows when its actor starts: the progress Redis already holds."""
    return ScanSnapshot(
        scan_id=job.scan_id,
        user=job.user,
        status=ScanStatus.SCANNING,
        total=len(job.params.strategies),
        completed=len(job.done),
        found=sum(len(r.opportunities) for r in job.done),
        created_at=job.created_at,
        updated_at=job.started_at,
    )


class ScanActor(pykka.ThreadingActor):
    def __init__(self, job: ScanJob, deps: ScanDeps, cell: SnapshotCell) -> None:
        super().__init__()
        self._job = job
        self._deps = deps
        self._cell = cell
        self._log = get_logger("oppscan.scan").bind(scan_id=job.scan_id, epoch=job.epoch)
        self._durable: dict[str, StrategyResult] = {r.name: r for r in job.done}
        self._unsaved: list[StrategyResult] = []
        self._futures: dict[str, Future[StrategyResult | ScanFailure]] = {}
        self._outstanding: set[str] = set()  # submitted, not yet reported
        self._resubmitted: set[str] = set()  # lost once with their process already
        self._releasing = False
        self._finished = False
        self._stopped = threading.Event()
        self._closing: tuple[ScanStatus, str | None] | None = None
        self._final: ScanSnapshot | None = None
        self._retry_delay = MIN_RETRY
        self._retry_pending = False
        self._released = False
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
        proxy = self.actor_ref.proxy()
        for name in self._job.params.strategies:
            if name in self._durable:
                continue
            if name not in self._deps.strategies:
                # Resumed on a worker without this plugin: say so, and go on.
                missing = "strategy is not installed on this worker"
                self._unsaved.append(StrategyResult(name, "error", (), 0, missing))
            else:
                self._submit(proxy, name)
        self._log.info("scan_started", remaining=len(self._futures), resumed=len(self._durable))
        if self._job.cancel_requested:
            self._close(ScanStatus.CANCELLED, "cancelled by request")
        self._advance()

    def on_stop(self) -> None:
        for future in self._futures.values():
            future.cancel()
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
        if not (self._released or self._finished):
            self._close(ScanStatus.FAILED, "internal error")
            with contextlib.suppress(Exception):
                self._save_final()
        if not (self._released or self._finished):
            self._released = True
            self._cell.disown()
            self._deps.registrar.scan_released(self._job.scan_id)
        self.on_stop()

    def _submit(self, proxy: Any, name: str) -> None:
        params = self._job.params
        future = self._deps.pool.submit(name, params.symbols, params.timeframe, self._job.scan_id)
        future.add_done_callback(lambda f: _report(proxy, name, f))
        self._futures[name] = future
        self._outstanding.add(name)

    # -- asked -----------------------------------------------------------

    def cancel(self) -> ScanSnapshot | None:
        """Stop at the next strategy boundary and record the scan as cancelled.

        None when this actor no longer owns the scan: the cancel must go through Redis.
        """
        if self._closing is None:
            self._close(ScanStatus.CANCELLED, "cancelled by request")
            self._advance()
        return None if self._released else self._snapshot

    # -- told ------------------------------------------------------------

    def strategy_lost(self, name: str, error: str) -> None:
        """The process running `name` died (an OOM kill): run it once more, then give up."""
        if self._releasing or self._closing is not None or self._released:
            self._outstanding.discard(name)  # a successor runs it, or nobody needs it
            self._finish_release_when_idle()
        elif name not in self._resubmitted:
            self._resubmitted.add(name)
            self._log.warning("strategy_resubmitted", strategy=name, failure_reason=error)
            self._submit(self.actor_ref.proxy(), name)
        else:
            self.strategy_done(StrategyResult(name, "error", (), 0, error))

    def strategy_done(self, outcome: StrategyResult | ScanFailure) -> None:
        name = outcome.strategy if isinstance(outcome, ScanFailure) else outcome.name
        self._outstanding.discard(name)
        if self._closing is not None or self._released:
            return
        if isinstance(outcome, ScanFailure) and self._releasing:
            pass  # The successor runs it again and fails the scan itself.
        elif isinstance(outcome, ScanFailure):
            self._log.warning(
                "scan_failed", strategy=outcome.strategy, failure_reason=outcome.error
            )
            self._close(ScanStatus.FAILED, outcome.error)
        else:
            STRATEGY_SECONDS.labels(outcome.name, outcome.status).observe(outcome.duration_ms / 1e3)
            self._unsaved.append(outcome)
        self._advance()
        self._finish_release_when_idle()

    def release(self) -> threading.Event:
        """Hand the scan off (worker stopping) at a strategy boundary.

        Strategies not started are dropped; running ones finish and are saved;
        then the lease is freed so another worker resumes at once. The event is
        set when this actor has stopped.
        """
        self._releasing = True
        for name, future in self._futures.items():
            if future.cancel():
                self._outstanding.discard(name)
        self._finish_release_when_idle()
        return self._stopped

    def release_now(self) -> None:
        """The hand-off ran out of time: free the lease without waiting for strategies."""
        self._releasing = True
        self._outstanding.clear()
        self._finish_release_when_idle()

    def _finish_release_when_idle(self) -> None:
        if not self._releasing or self._outstanding or self._released or self._finished:
            return
        with contextlib.suppress(StoreUnavailable):
            self._save_results()
        if self._released:
            return
        released = False
        with contextlib.suppress(StoreUnavailable):
            released = self._deps.store.release(self._job.scan_id, self._job.epoch)
        self._log.info("lease_released", handed_off=released, completed=len(self._durable))
        LEASES.labels("released").inc()
        self._stop_owning()

    def lost(self) -> None:
        """Told by the lease keeper: another epoch owns the scan now."""
        if not self._released:
            self._fenced()

    def retry_writes(self) -> None:
        self._retry_pending = False
        waiting = len(self._unsaved) + (self._closing is not None)
        self._advance()
        if waiting and not self._retry_pending:
            self._log.info("writes_flushed", writes=waiting)

    # -- the write-through core ---------------------------------------------

    def _advance(self) -> None:
        if self._released:
            return
        try:
            self._save_results()
            if self._released:
                return
            if self._closing is None and len(self._durable) == self._snapshot.total:
                self._close(ScanStatus.COMPLETE, None)
            if self._closing is not None:
                self._save_final()
        except StoreUnavailable as exc:
            self._log.warning("scan_write_deferred", failure_reason=exc.reason)
            self._schedule_retry()

    def _save_results(self) -> None:
        while self._unsaved and self._closing is None:
            recorded = self._save_next()
            if recorded is None:
                return self._fenced()
            if recorded.cancel_requested and len(self._durable) < self._snapshot.total:
                self._close(ScanStatus.CANCELLED, "cancelled by request")
        return None

    def _save_next(self) -> Recorded | None:
        """Write the oldest unsaved result, then publish the progress it made durable."""
        result = self._unsaved[0]
        with self._cell.writing():
            recorded = self._written(
                lambda: self._deps.store.record_strategy(
                    self._job.scan_id, self._job.epoch, result, now_iso()
                )
            )
            if recorded is None:
                self._cell.give_up()
                return None
            self._unsaved.pop(0)
            self._durable[result.name] = result
            self._retry_delay = MIN_RETRY
            self._snapshot = replace(
                self._snapshot,
                completed=max(self._snapshot.completed, recorded.completed),
                found=max(self._snapshot.found, recorded.found),
                updated_at=recorded.updated_at,
            )
            self._cell.publish(self._snapshot)
        return recorded

    def _close(self, status: ScanStatus, error: str | None) -> None:
        self._closing = (status, error)
        self._unsaved.clear()
        for future in self._futures.values():
            future.cancel()

    def _save_final(self) -> None:
        final = self._final or self._final_snapshot()
        self._final = final
        digest = self._job.params.digest()
        with self._cell.writing():
            stored = self._written(
                lambda: self._deps.store.finish(
                    final, self._job.epoch, digest, self._deps.result_ttl
                )
            )
            if stored:
                self._snapshot = final
                self._cell.publish(final)
            else:
                self._cell.give_up()
        if not stored:
            return self._fenced()
        self._finished = True
        SCANS_FINISHED.labels(final.status.value).inc()
        self._log.info("scan_finished", status=final.status.value, completed=final.completed)
        self._deps.registrar.scan_finished(final)
        self.actor_ref.stop(block=False)
        return None

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
        assert self._closing is not None
        status, error = self._closing
        completed_at = now_iso()
        results = build_results(
            self._job.scan_id,
            status,
            self._job.params,
            self._durable,
            self._job.started_at,
            completed_at,
            self._deps.results_cap,
            error,
        )
        return replace(
            self._snapshot,
            status=status,
            completed=len(self._durable),
            updated_at=completed_at,
            completed_at=completed_at,
            error=error,
            results=results,
        )

    def _fenced(self) -> None:
        """A newer epoch owns the scan: drop everything, write nothing more."""
        self._log.warning("scan_fenced", failure_reason="epoch_superseded")
        self._stop_owning()

    def _stop_owning(self) -> None:
        self._released = True
        self._closing = (ScanStatus.CANCELLED, "released")
        for future in self._futures.values():
            future.cancel()
        self._cell.disown()
        self._deps.registrar.scan_released(self._job.scan_id)
        self.actor_ref.stop(block=False)

    def _schedule_retry(self) -> None:
        if self._retry_pending:
            return
        self._retry_pending = True
        proxy = self.actor_ref.proxy()
        self._deps.schedule(self._retry_delay, lambda: _tell_retry(proxy))
        self._retry_delay = min(MAX_RETRY, self._retry_delay * 2)


def _report(proxy: Any, name: str, future: Future[StrategyResult | ScanFailure]) -> None:
    if future.cancelled():
        return
    # The scan may have finished or stopped meanwhile; then nobody needs the news.
    with contextlib.suppress(pykka.ActorDeadError):
        lost = future.exception()  # run_strategy never raises: its process died
        if lost is None:
            proxy.strategy_done.defer(future.result())
        else:
            proxy.strategy_lost.defer(name, f"{type(lost).__name__}: {lost}")


def _tell_retry(proxy: Any) -> None:
    with contextlib.suppress(pykka.ActorDeadError):
        proxy.retry_writes.defer()
