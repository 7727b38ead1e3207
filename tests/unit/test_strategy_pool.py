"""The thread pool's deadline: a hung strategy is recorded `error` on time, and never
holds the pool, nor the worker's exit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future

import pytest
from structlog.testing import capture_logs

from oppscan.actors import ScanFailure, ThreadStrategyPool
from oppscan.actors.strategy_run import StrategyJob
from oppscan.model import StrategyResult
from oppscan.strategies import StrategyContext
from tests.fakes import FakeStrategy, market
from tests.support.polling import poll_until

TIMEOUT = 0.05
WAIT = 10.0  # a bound on futures that resolve at TIMEOUT, or at once


@pytest.fixture
def gates() -> Iterator[dict[str, threading.Event]]:
    """One event per stuck strategy, holding it until the test sets it (or ends)."""
    held = {"stuck": threading.Event(), "late": threading.Event()}
    yield held
    for gate in held.values():
        gate.set()


def pool(
    gates: dict[str, threading.Event], threads: int = 1, max_abandoned: int = 4
) -> ThreadStrategyPool:
    strategies = [FakeStrategy(name, gate=gate) for name, gate in gates.items()]
    by_name = {s.name: s for s in (*strategies, FakeStrategy("alpha"))}
    return ThreadStrategyPool(threads, by_name, TIMEOUT, max_abandoned)


def start(on: ThreadStrategyPool, name: str) -> Future[StrategyResult | ScanFailure]:
    return on.submit(StrategyJob(name, StrategyContext(market(), ("SYM0",), "1h"), "scan_1"))


def outcome(future: Future[StrategyResult | ScanFailure]) -> StrategyResult:
    result = future.result(WAIT)
    assert isinstance(result, StrategyResult)
    return result


def running(name: str) -> bool:
    return any(t.name == f"strategy-run-{name}" for t in threading.enumerate())


def test_a_hung_strategy_is_an_error_at_its_deadline(gates: dict[str, threading.Event]) -> None:
    """The future of a strategy that never returns resolves `error`, "timed out after 0.05 s"."""
    hung = outcome(start(pool(gates), "stuck"))
    assert ("stuck", "error", (), "timed out after 0.05 s") == (
        hung.name,
        hung.status,
        hung.opportunities,
        hung.error,
    )
    assert hung.duration_ms >= TIMEOUT * 1000


def test_the_queue_goes_on_past_a_stuck_strategy(gates: dict[str, threading.Event]) -> None:
    """With one thread, a strategy queued behind a hung one runs while that one still hangs."""
    single = pool(gates, threads=1)
    first = start(single, "stuck")
    assert "ok" == outcome(start(single, "alpha")).status
    assert "error" == outcome(first).status
    assert running("stuck")


def test_abandoned_threads_are_bounded_and_logged(gates: dict[str, threading.Event]) -> None:
    """Past `max_abandoned` stuck threads, a pool thread stays with its own: logged, bounded."""
    single = pool(gates, threads=1, max_abandoned=1)
    with capture_logs() as logs:
        first, second = start(single, "stuck"), start(single, "late")
        queued = start(single, "alpha")
        assert "timed out after 0.05 s" == outcome(second).error
        assert "error" == outcome(first).status
        assert not queued.done(), "the one pool thread stays with the second stuck strategy"
        gates["late"].set()
        assert "ok" == outcome(queued).status
    timed_out = [e["thread"] for e in logs if e["event"] == "strategy_timed_out"]
    assert ["abandoned", "kept: 1 abandoned already"] == timed_out


def test_an_abandoned_thread_gives_its_place_back(gates: dict[str, threading.Event]) -> None:
    """Once an abandoned strategy returns, another stuck one may be abandoned in its place."""
    single = pool(gates, threads=1, max_abandoned=1)
    assert "error" == outcome(start(single, "stuck")).status
    gates["stuck"].set()
    poll_until(lambda: not running("stuck"), WAIT)
    late = start(single, "late")
    assert "ok" == outcome(start(single, "alpha")).status
    assert "error" == outcome(late).status


def test_no_pool_thread_holds_up_the_exit(gates: dict[str, threading.Event]) -> None:
    """Every thread of the pool, a stuck strategy's included, is a daemon: exit never joins it."""
    stuck = pool(gates, threads=2)
    outcome(start(stuck, "stuck"))
    stuck.shutdown()
    joined_at_exit = [
        t.name for t in threading.enumerate() if t.name.startswith("strategy") and not t.daemon
    ]
    assert [] == joined_at_exit
    assert running("stuck")


def test_shutdown_cancels_what_has_not_started(gates: dict[str, threading.Event]) -> None:
    """Strategies still queued when the pool shuts down are cancelled, not run."""
    strategies = {"stuck": FakeStrategy("stuck", gate=gates["stuck"])}
    single = ThreadStrategyPool(1, strategies, 60.0)
    start(single, "stuck")
    queued = start(single, "stuck")
    single.shutdown()
    assert queued.cancelled()
