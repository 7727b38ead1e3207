"""Two worker runtimes on one real Redis: dedup races, cross-worker reads, real scans."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oppscan.model import ScanParams, ScanStatus, millis_between
from oppscan.runtime import Runtime, start_runtime, stop_runtime
from oppscan.service import Answer, ScanNotFound, ScanService
from oppscan.settings import Settings
from oppscan.strategies import available_strategies

ALL = tuple(sorted(available_strategies()))


def settings(redis_url: str, data_dir: Path, latency_ms: float = 0.0) -> Settings:
    return Settings(
        redis_url=redis_url, data_dir=data_dir, synthetic_latency_ms=latency_ms, result_ttl=600
    )


@pytest.fixture
def workers(redis_url: str, data_dir: Path) -> Iterator[tuple[Runtime, Runtime]]:
    """Two runtimes, as two gunicorn workers would have, with slow market data."""
    one = start_runtime(settings(redis_url, data_dir, latency_ms=20.0))
    two = start_runtime(settings(redis_url, data_dir, latency_ms=20.0))
    yield one, two
    stop_runtime(one)
    stop_runtime(two)


def params(symbols: tuple[str, ...] = ("BTC-USD", "ETH-USD", "SOL-USD")) -> ScanParams:
    return ScanParams(ALL, symbols, "1h")


def wait_terminal(service: ScanService, user: str, scan_id: str, timeout: float = 60) -> Answer:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = service.results(user, scan_id)
        if answer.snapshot.status.terminal:
            return answer
        time.sleep(0.02)
    raise AssertionError(f"{scan_id} did not finish within {timeout}s")


def test_concurrent_identical_requests_on_two_workers_share_one_scan(
    workers: tuple[Runtime, Runtime],
) -> None:
    """Sixteen identical discovers racing over two registries all get the same scan id."""
    services = [ScanService(w) for w in workers]
    barrier = threading.Barrier(16)
    ids: list[str] = []

    def go(i: int) -> None:
        barrier.wait()
        ids.append(services[i % 2].discover("alice", params(), force_refresh=False).scan_id)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert 16 == len(ids)
    assert 1 == len(set(ids))


def test_scan_runs_and_every_worker_serves_identical_results(
    workers: tuple[Runtime, Runtime],
) -> None:
    """A scan started on one worker completes; both workers then serve byte-identical results."""
    owner, other = (ScanService(w) for w in workers)
    scan_id = owner.discover("alice", params(), force_refresh=False).scan_id
    seen = other.status("alice", scan_id)
    assert ("store", len(ALL)) == (seen.source, seen.snapshot.total)
    done = wait_terminal(owner, "alice", scan_id)
    assert ScanStatus.COMPLETE == done.snapshot.status
    remote = other.results("alice", scan_id)
    assert (done.snapshot.results, "store") == (remote.snapshot.results, remote.source)
    assert "cache" == other.results("alice", scan_id).source
    body = json.loads(done.snapshot.results or b"")
    assert len(ALL) == body["metadata"]["strategies_completed"] == len(body["strategy_performance"])


def test_finished_scan_is_reused_unless_refresh_is_forced(workers: tuple[Runtime, Runtime]) -> None:
    """An identical request after completion reuses the scan; force_refresh starts a new one."""
    one, two = (ScanService(w) for w in workers)
    small = params(("BTC-USD",))
    scan_id = one.discover("alice", small, force_refresh=False).scan_id
    wait_terminal(one, "alice", scan_id)
    reused = two.discover("alice", small, force_refresh=False)
    assert (scan_id, True) == (reused.scan_id, reused.cached)
    fresh = two.discover("alice", small, force_refresh=True)
    assert scan_id != fresh.scan_id
    joined = one.discover("alice", small, force_refresh=True)
    assert (fresh.scan_id, True) == (joined.scan_id, joined.deduplicated)


def test_users_are_isolated_across_workers(workers: tuple[Runtime, Runtime]) -> None:
    """Bob can neither read Alice's scan nor join it with identical parameters."""
    one, two = (ScanService(w) for w in workers)
    scan_id = one.discover("alice", params(("BTC-USD",)), force_refresh=False).scan_id
    for service in (one, two):
        with pytest.raises(ScanNotFound):
            service.status("bob", scan_id)
    assert scan_id != two.discover("bob", params(("BTC-USD",)), force_refresh=False).scan_id


def test_cancel_from_another_worker_reaches_the_owner(workers: tuple[Runtime, Runtime]) -> None:
    """A DELETE on a non-owning worker is honoured by the owner at the next boundary."""
    owner, other = (ScanService(w) for w in workers)
    scan_id = owner.discover("alice", params(), force_refresh=False).scan_id
    other.cancel("alice", scan_id)
    done = wait_terminal(other, "alice", scan_id)
    assert ScanStatus.CANCELLED == done.snapshot.status
    assert done.snapshot.completed < done.snapshot.total


def test_every_worker_lists_the_request_and_the_end_of_retention(
    workers: tuple[Runtime, Runtime],
) -> None:
    """From Redis, on the worker that did not run it: the scan list shows what the scan
    asked for; its status, when its retention (600 s) ends."""
    one, two = (ScanService(w) for w in workers)
    scan_id = one.discover("alice", params(("BTC-USD",)), True).scan_id
    wait_terminal(one, "alice", scan_id)
    listed = next(s for s in two.list_scans("alice", 10) if s.scan_id == scan_id)
    assert {"strategies": list(ALL), "symbols": 1, "timeframe": "1h"} == listed.listed_body()[
        "request"
    ]
    stored = two.status("alice", scan_id).snapshot
    assert stored.expires_at is not None
    assert stored.completed_at is not None
    assert 600_000 == millis_between(stored.completed_at, stored.expires_at)
