"""Strategies in child processes, on a real Redis: the same results as threads, a
child killed with SIGKILL costs a retry, not the scan, and a child that hangs is killed
at the strategy's deadline."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oppscan.actors import ProcessStrategyPool
from oppscan.actors.strategy_run import StrategyJob
from oppscan.market import SyntheticMarket
from oppscan.market.base import SeriesKey
from oppscan.market.plan import ScanMarket
from oppscan.model import ScanParams, ScanStatus, StrategyResult
from oppscan.runtime import Runtime, start_runtime, stop_runtime
from oppscan.service import ScanService
from oppscan.settings import Settings
from oppscan.strategies import StrategyContext, available_strategies
from tests.support.plugins import HANG, install_hang_plugin
from tests.support.polling import poll_until

ALL = tuple(sorted(available_strategies()))
PARAMS = ScanParams(ALL, ("BTC-USD", "ETH-USD", "SOL-USD"), "1h")


def poll(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    poll_until(predicate, timeout)


def job(name: str) -> StrategyJob:
    """`name` on the primary bars of PARAMS' symbols, fetched here as a scan would."""
    source = SyntheticMarket()
    series = {
        SeriesKey.bars("alpha", symbol, "1h"): source.bars(symbol, "1h")
        for symbol in PARAMS.symbols
    }
    market = ScanMarket(source.name, tuple(source.venues()), series)
    return StrategyJob(name, StrategyContext(market, PARAMS.symbols, "1h"), "scan_1")


def run_scan(runtime: Runtime) -> dict[str, Any]:
    service = ScanService(runtime)
    scan_id = service.discover("alice", PARAMS, force_refresh=True).scan_id
    poll(lambda: service.status("alice", scan_id).snapshot.status.terminal)
    results = service.results("alice", scan_id).snapshot.results
    assert results is not None
    body: dict[str, Any] = json.loads(results)
    return body


def comparable(body: dict[str, Any]) -> tuple[object, ...]:
    """What must not depend on where strategies ran (ids and timings may)."""
    performance = {
        name: (p["status"], p["opportunities"]) for name, p in body["strategy_performance"].items()
    }
    return body["status"], body["opportunities"], performance


def test_processes_give_the_results_threads_give(redis_url: str, data_dir: Path) -> None:
    """The same scan, run on threads and in two child processes, ranks the same opportunities."""
    threads = start_runtime(Settings(redis_url=redis_url, data_dir=data_dir, key_prefix="t:"))
    processes = start_runtime(
        Settings(redis_url=redis_url, data_dir=data_dir, key_prefix="p:", strategy_processes=2)
    )
    try:
        on_threads, in_processes = run_scan(threads), run_scan(processes)
    finally:
        stop_runtime(threads)
        stop_runtime(processes)
    assert "complete" == in_processes["status"]
    assert len(ALL) == in_processes["metadata"]["strategies_completed"]
    assert in_processes["opportunities"], "the synthetic market yields opportunities"
    assert comparable(on_threads) == comparable(in_processes)


def test_a_killed_child_costs_a_retry_not_the_scan(redis_url: str, data_dir: Path) -> None:
    """SIGKILL to the strategy process mid-scan: its strategies run again in a fresh one."""
    # An earlier test's pool was shut down without waiting: its children may still exit.
    poll(lambda: not multiprocessing.active_children())
    settings = Settings(
        redis_url=redis_url, data_dir=data_dir, strategy_processes=1, synthetic_latency_ms=20.0
    )
    runtime = start_runtime(settings)
    try:
        service = ScanService(runtime)
        scan_id = service.discover("alice", PARAMS, force_refresh=True).scan_id
        poll(lambda: service.status("alice", scan_id).snapshot.completed >= 1)
        children = multiprocessing.active_children()
        assert 1 == len(children)
        os.kill(children[0].pid or 0, signal.SIGKILL)
        poll(lambda: service.status("alice", scan_id).snapshot.status.terminal)
        final = service.results("alice", scan_id).snapshot
        again = run_scan(runtime)
    finally:
        stop_runtime(runtime)
    assert final.results is not None
    body = json.loads(final.results)
    assert ScanStatus.COMPLETE == final.status
    statuses = {p["status"] for p in body["strategy_performance"].values()}
    assert statuses <= {"ok", "skipped"}, "every lost strategy ran again"
    assert len(ALL) == body["metadata"]["strategies_completed"]
    assert "complete" == again["status"], "the next scan gets a fresh process"


def test_a_hung_child_is_killed_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A strategy hung in its child is `error` at 1 s; the child is killed, a fresh one runs on."""
    monkeypatch.syspath_prepend(str(install_hang_plugin(tmp_path / "plugins")))  # children too
    pool = ProcessStrategyPool(1, timeout=1.0)
    try:
        hung = pool.submit(job(HANG))
        poll(lambda: 1 == len(multiprocessing.active_children()))
        stuck = multiprocessing.active_children()[0]
        outcome = hung.result(60)
        stuck.join(10)
        after = pool.submit(job("momentum")).result(60)
        children = multiprocessing.active_children()
    finally:
        pool.shutdown()
    assert isinstance(outcome, StrategyResult)
    assert (HANG, "error", "timed out after 1 s") == (outcome.name, outcome.status, outcome.error)
    assert -signal.SIGKILL == stuck.exitcode
    assert isinstance(after, StrategyResult)
    assert "ok" == after.status
    assert [stuck.pid] != [c.pid for c in children]
