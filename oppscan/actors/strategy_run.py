"""Running strategies: on threads of the worker, or in child processes.

Threads suit strategies that wait on market data (I/O-bound); processes suit
strategies that compute (CPU-bound), because Python threads share one
interpreter lock with the worker's request threads. Either way every outcome
comes back as a value: a result, or the failure that fails the scan; and a
strategy still running at its deadline comes back as an `error` at once,
while the thread or child stuck with it holds nothing the worker needs.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

from oppscan.logs import configure as configure_logs
from oppscan.logs import get_logger
from oppscan.market import MarketDataError
from oppscan.market.plan import ScanMarket
from oppscan.model import StrategyResult
from oppscan.settings import Settings
from oppscan.strategies import Strategy, StrategyContext, StrategySkipped, available_strategies

log = get_logger("oppscan.strategy")


@dataclass(frozen=True)
class ScanFailure:
    """What fails the whole scan: no market data could be had at all."""

    strategy: str
    error: str


@dataclass(frozen=True)
class StrategyJob:
    """One strategy of one scan, on the scan's market, and the future its scan waits on.

    The pool marks the future running when the strategy starts (and calls
    `on_start`): until then a scan that hands off can cancel it.
    """

    name: str
    ctx: StrategyContext
    scan_id: str
    future: Future[StrategyResult | ScanFailure] = field(default_factory=Future)
    on_start: Callable[[], None] | None = None

    def starting(self) -> bool:
        """Mark the job running and say so; False when it was cancelled meanwhile."""
        if not self.future.set_running_or_notify_cancel():
            return False
        if self.on_start is not None:
            try:
                self.on_start()
            except Exception:  # news of a start is for show: the strategy runs anyway
                log.exception("strategy_start_callback_error", scan_id=self.scan_id)
        return True

    def request(self) -> tuple[str, StrategyContext, str]:
        """What a child process needs: its market without the worker's cache."""
        market = self.ctx.market
        if isinstance(market, ScanMarket):
            market = market.detached()
        return (
            self.name,
            StrategyContext(market, self.ctx.symbols, self.ctx.timeframe),
            self.scan_id,
        )


class StrategyPool(Protocol):
    """Where a scan's strategies run, each within a deadline. A future fails only
    when its process died."""

    def submit(self, job: StrategyJob) -> Future[StrategyResult | ScanFailure]: ...

    def shutdown(self) -> None: ...


def run_strategy(
    strategy: Strategy, ctx: StrategyContext, scan_id: str
) -> StrategyResult | ScanFailure:
    """Never raises: skipped, error and market failures become values."""
    started = time.perf_counter()

    def elapsed() -> int:
        return round((time.perf_counter() - started) * 1000)

    name = strategy.name
    try:
        found = strategy.run(ctx)
    except StrategySkipped as skip:
        return StrategyResult(name, "skipped", (), elapsed(), skip.reason)
    except MarketDataError as exc:  # a series it read but did not declare
        return StrategyResult(name, "skipped", (), elapsed(), str(exc))
    except Exception as exc:
        log.warning("strategy_error", scan_id=scan_id, strategy=name, failure_reason=repr(exc))
        return StrategyResult(name, "error", (), elapsed(), f"{type(exc).__name__}: {exc}")
    opportunities = tuple(o.to_dict() for o in found)
    return StrategyResult(name, "ok", opportunities, elapsed())


def timed_out(name: str, timeout: float, started: float) -> StrategyResult:
    """What a strategy that ran past its deadline is recorded as."""
    elapsed = round((time.perf_counter() - started) * 1000)
    return StrategyResult(name, "error", (), elapsed, f"timed out after {timeout:g} s")


class _Dispatcher:
    """A queue of jobs for `servers`, each calling its server on a daemon thread of its own.

    Daemon threads: nothing a strategy does can hold up the worker's exit (a
    `ThreadPoolExecutor`'s threads are joined at interpreter exit). Jobs whose
    future was cancelled are skipped; `close` cancels every job not started.
    """

    def __init__(self, servers: Sequence[Callable[[StrategyJob], None]], name: str) -> None:
        self._jobs: queue.SimpleQueue[StrategyJob | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._count = len(servers)
        for i, serve in enumerate(servers):
            thread = threading.Thread(target=self._loop, args=(serve,), name=f"{name}-{i}")
            thread.daemon = True
            thread.start()

    def submit(self, job: StrategyJob) -> Future[StrategyResult | ScanFailure]:
        with self._lock:
            if self._closed:  # the worker is stopping: nothing new starts
                job.future.cancel()
            else:
                self._jobs.put(job)
        return job.future

    def close(self) -> None:
        with self._lock:
            self._closed = True
        with contextlib.suppress(queue.Empty):
            while True:
                pending = self._jobs.get_nowait()
                if pending is not None:
                    pending.future.cancel()
        for _ in range(self._count):
            self._jobs.put(None)

    def _loop(self, serve: Callable[[StrategyJob], None]) -> None:
        while (job := self._jobs.get()) is not None:
            if self._closed:
                job.future.cancel()
            elif job.starting():
                _serve_or_fail(serve, job)


def _serve_or_fail(serve: Callable[[StrategyJob], None], job: StrategyJob) -> None:
    """A server that raises (a child that cannot spawn) fails that job, not the thread."""
    try:
        serve(job)
    except BaseException as exc:
        log.exception("strategy_pool_error", scan_id=job.scan_id, strategy=job.name)
        if not job.future.done():
            job.future.set_exception(exc)


ABANDONED_PER_THREAD = 4  # stuck strategy threads a pool leaves behind, per pool thread


class ThreadStrategyPool:
    """Strategies on `threads` threads of this worker, each within `timeout` seconds.

    Each strategy runs on a thread of its own while one of the pool's threads
    waits for it. At the deadline the future resolves as timed out and the
    pool's thread serves the queue again: the strategy's thread, which no one
    can stop, is abandoned (a daemon, it holds nothing at exit). At most
    `max_abandoned` are left behind at once; past that a pool thread keeps
    waiting for its stuck strategy, so hung strategies shrink the pool rather
    than grow the worker's threads without bound.
    """

    def __init__(
        self,
        threads: int,
        strategies: Mapping[str, Strategy],
        timeout: float = Settings.strategy_timeout,
        max_abandoned: int | None = None,
    ) -> None:
        self._strategies = strategies
        self._timeout = timeout
        if max_abandoned is None:
            max_abandoned = ABANDONED_PER_THREAD * threads
        self._max_abandoned = max_abandoned
        self._abandoned = threading.BoundedSemaphore(max_abandoned)
        self._dispatcher = _Dispatcher([self._serve] * threads, "strategy")

    def submit(self, job: StrategyJob) -> Future[StrategyResult | ScanFailure]:
        return self._dispatcher.submit(job)

    def shutdown(self) -> None:
        self._dispatcher.close()

    def _serve(self, job: StrategyJob) -> None:
        strategy = self._strategies[job.name]
        run = _Run(lambda: run_strategy(strategy, job.ctx, job.scan_id), job.name)
        started = time.perf_counter()
        run.start()
        outcome = run.wait(self._timeout)
        if outcome is not None:
            job.future.set_result(outcome)
            return
        job.future.set_result(timed_out(job.name, self._timeout, started))
        kept = not run.abandon(self._abandoned)
        (log.error if kept else log.warning)(
            "strategy_timed_out",
            scan_id=job.scan_id,
            strategy=job.name,
            failure_reason=f"timed out after {self._timeout:g} s",
            thread=f"kept: {self._max_abandoned} abandoned already" if kept else "abandoned",
        )
        if kept:
            run.wait(None)


class _Run:
    """One strategy on a daemon thread of its own, which may be abandoned to it."""

    def __init__(self, call: Callable[[], StrategyResult | ScanFailure], name: str) -> None:
        self._call = call
        self._thread = threading.Thread(target=self._main, name=f"strategy-run-{name}")
        self._thread.daemon = True
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._outcome: StrategyResult | ScanFailure | None = None
        self._raised: BaseException | None = None
        self._released: threading.BoundedSemaphore | None = None

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float | None) -> StrategyResult | ScanFailure | None:
        """The outcome, or None if it is not there within `timeout` seconds."""
        self._done.wait(timeout)
        if self._raised is not None:
            raise self._raised
        return self._outcome

    def abandon(self, room: threading.BoundedSemaphore) -> bool:
        """Leave the strategy to its thread if `room` has a place (given back when it ends)."""
        with self._lock:
            if self._done.is_set() or not room.acquire(blocking=False):
                return self._done.is_set()
            self._released = room
            return True

    def _main(self) -> None:
        try:
            self._outcome = self._call()
        except BaseException as exc:  # run_strategy lets only these through: SystemExit...
            self._raised = exc
        finally:
            with self._lock:
                self._done.set()
                if self._released is not None:
                    self._released.release()


class ProcessStrategyPool:
    """Strategies in `processes` child processes, each sent the series it reads.

    Children are spawned (never forked from this threaded process) on first
    use; each runs one strategy at a time for one thread of this worker. A
    child still running a strategy at its deadline is killed and the strategy
    recorded as timed out; a child that dies (an OOM kill) fails the future of
    the one strategy it ran with `BrokenProcessPool`, and the scan submits it
    once more. Either way the next strategy gets a fresh child.
    """

    def __init__(self, processes: int, timeout: float = Settings.strategy_timeout) -> None:
        spawn = functools.partial(_Child, max(timeout, CHILD_START_TIMEOUT))
        self._slots = [_ChildSlot(spawn, timeout) for _ in range(processes)]
        self._dispatcher = _Dispatcher([slot.serve for slot in self._slots], "strategy-child")

    def submit(self, job: StrategyJob) -> Future[StrategyResult | ScanFailure]:
        return self._dispatcher.submit(job)

    def shutdown(self) -> None:
        """Cancel what has not started and kill the children: their scans were handed off."""
        self._dispatcher.close()
        for slot in self._slots:
            slot.close()


class _ChildSlot:
    """One child process at a time, replaced when it dies or overruns a deadline."""

    def __init__(self, spawn: Callable[[], _Child], timeout: float) -> None:
        self._spawn = spawn
        self._timeout = timeout
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._closed = False

    def serve(self, job: StrategyJob) -> None:
        try:
            child = self._current()
            started = time.perf_counter()
            outcome = child.run(job.request(), self._timeout)
        except BrokenProcessPool as lost:
            log.warning("strategy_child_died", scan_id=job.scan_id, strategy=job.name)
            self._replace()
            job.future.set_exception(lost)
            return
        if outcome is None:
            log.warning(
                "strategy_timed_out",
                scan_id=job.scan_id,
                strategy=job.name,
                failure_reason=f"timed out after {self._timeout:g} s",
                child="killed",
            )
            self._replace()
            outcome = timed_out(job.name, self._timeout, started)
        job.future.set_result(outcome)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._replace()

    def _current(self) -> _Child:
        with self._lock:
            child = self._child
        if child is None:
            child = self._spawn()  # seconds: not under the lock `close` needs
            with self._lock:
                self._child = child
        if self._closed:
            self._replace()
            raise BrokenProcessPool("the strategy pool is shut down")
        return child

    def _replace(self) -> None:
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            child.kill()


class _Child:
    """A spawned child process that runs strategies sent down a pipe, one at a time."""

    def __init__(self, start_timeout: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, theirs = context.Pipe()
        self._process = context.Process(target=_child_main, args=(theirs,), name="oppscan-strategy")
        self._process.daemon = True  # multiprocessing ends it when this worker exits
        self._process.start()
        theirs.close()
        if self._receive(start_timeout) is None:
            self.kill()
            raise BrokenProcessPool(f"strategy child did not start within {start_timeout:g} s")

    def run(
        self, request: tuple[str, StrategyContext, str], timeout: float
    ) -> StrategyResult | ScanFailure | None:
        """The strategy's outcome, or None when it is still running after `timeout` s."""
        try:
            self._conn.send(request)
        except OSError as exc:
            raise BrokenProcessPool("strategy child died") from exc
        outcome: StrategyResult | ScanFailure | None = self._receive(timeout)
        return outcome

    def kill(self) -> None:
        self._process.kill()
        self._process.join()
        self._conn.close()

    def _receive(self, timeout: float) -> Any:
        try:
            if not self._conn.poll(timeout):
                return None
            return self._conn.recv()
        except (EOFError, OSError) as exc:
            raise BrokenProcessPool("strategy child died") from exc


CHILD_NICENESS = 10
CHILD_START_TIMEOUT = 30.0  # seconds a spawned child may take to import and say ready
CHILD_READY = "ready"


def _child_main(conn: Connection) -> None:
    """Set up, say so, then run every strategy the worker sends until it hangs up."""
    # Ctrl-C reaches the whole process group: the worker decides when this child ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Below the request threads: the kernel runs strategies on whatever CPU
    # answering requests leaves, which is what the status p99 needs.
    os.nice(CHILD_NICENESS)
    configure_logs()
    strategies = available_strategies()
    conn.send(CHILD_READY)
    with contextlib.suppress(EOFError):
        while True:
            name, ctx, scan_id = conn.recv()
            conn.send(run_strategy(strategies[name], ctx, scan_id))
