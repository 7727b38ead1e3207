"""Running strategies: on threads of the worker, or in child processes.

Threads suit strategies that wait on market data (I/O-bound); processes suit
strategies that compute (CPU-bound), because Python threads share one
interpreter lock with the worker's request threads. Either way every outcome
comes back as a value: a result, or the failure that fails the scan.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Protocol

from oppscan.logs import configure as configure_logs
from oppscan.logs import get_logger
from oppscan.market import MarketData, MarketDataError, load_market
from oppscan.model import StrategyResult
from oppscan.strategies import Strategy, StrategyContext, StrategySkipped, available_strategies

log = get_logger("oppscan.strategy")


@dataclass(frozen=True)
class ScanFailure:
    """The data source failed in a way that fails the whole scan (a bad file)."""

    strategy: str
    error: str


class StrategyPool(Protocol):
    """Where a scan's strategies run. A future fails only when its process died."""

    def submit(
        self, name: str, symbols: tuple[str, ...], timeframe: str, scan_id: str
    ) -> Future[StrategyResult | ScanFailure]: ...

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
    except MarketDataError as exc:
        return ScanFailure(name, str(exc))
    except Exception as exc:
        log.warning("strategy_error", scan_id=scan_id, strategy=name, failure_reason=repr(exc))
        return StrategyResult(name, "error", (), elapsed(), f"{type(exc).__name__}: {exc}")
    opportunities = tuple(o.to_dict() for o in found)
    return StrategyResult(name, "ok", opportunities, elapsed())


class ThreadStrategyPool:
    """Strategies on `threads` threads of this worker, over this worker's market data."""

    def __init__(self, threads: int, strategies: Mapping[str, Strategy], market: MarketData):
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="strategy")
        self._strategies = strategies
        self._market = market

    def submit(
        self, name: str, symbols: tuple[str, ...], timeframe: str, scan_id: str
    ) -> Future[StrategyResult | ScanFailure]:
        ctx = StrategyContext(self._market, symbols, timeframe)
        return self._executor.submit(run_strategy, self._strategies[name], ctx, scan_id)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class ProcessStrategyPool:
    """Strategies in `processes` child processes, each with its own copy of the market.

    Children are spawned (never forked from this threaded process) on first
    use. When a child dies (an OOM kill), every future of the pool fails with
    `BrokenProcessPool`; the scans submit those strategies once more, and the
    next submit starts a fresh pool.
    """

    def __init__(self, processes: int, market: str, latency_ms: float) -> None:
        self._processes = processes
        self._market = (market, latency_ms)
        self._lock = threading.Lock()
        self._closed = False
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self._processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_child,
            initargs=self._market,
        )

    def submit(
        self, name: str, symbols: tuple[str, ...], timeframe: str, scan_id: str
    ) -> Future[StrategyResult | ScanFailure]:
        with self._lock:
            if self._closed:  # the worker is stopping: nothing new starts
                dropped: Future[StrategyResult | ScanFailure] = Future()
                dropped.cancel()
                return dropped
            try:
                return self._executor.submit(_run_in_child, name, symbols, timeframe, scan_id)
            except BrokenProcessPool:
                log.warning("strategy_pool_restarted", failure_reason="child_process_died")
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new_executor()
                return self._executor.submit(_run_in_child, name, symbols, timeframe, scan_id)

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            self._executor.shutdown(wait=False, cancel_futures=True)


CHILD_NICENESS = 10
_child: tuple[MarketData, Mapping[str, Strategy]] | None = None


def _start_child(market: str, latency_ms: float) -> None:
    global _child
    # Below the request threads: the kernel runs strategies on whatever CPU
    # answering requests leaves, which is what the status p99 needs.
    os.nice(CHILD_NICENESS)
    configure_logs()
    _child = (load_market(market, latency_ms), available_strategies())


def _run_in_child(
    name: str, symbols: tuple[str, ...], timeframe: str, scan_id: str
) -> StrategyResult | ScanFailure:
    assert _child is not None, "the pool's initializer sets up every child"
    market, strategies = _child
    return run_strategy(strategies[name], StrategyContext(market, symbols, timeframe), scan_id)
