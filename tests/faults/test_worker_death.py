"""A worker dies (SIGKILL) or stalls (SIGSTOP) under a running scan: nothing is lost."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from oppscan.strategies import available_strategies
from tests.faults.conftest import LEASE_TTL, ServerFactory, owner_pid, scan_field
from tests.support.polling import poll_until
from tests.support.watch import Scan, Watch, start_scans

ALL = sorted(available_strategies())


def completed(redis_url: str, scan: Scan) -> int:
    return int(scan_field(redis_url, scan.scan_id, "completed") or 0)


def assert_every_strategy_once(watch: Watch) -> None:
    for scan_id, body in watch.results().items():
        assert "complete" == body["status"], scan_id
        assert ALL == sorted(body["strategy_performance"])  # type: ignore[arg-type]
        assert len(ALL) == body["metadata"]["strategies_completed"]  # type: ignore[index]


def assert_clean(watch: Watch) -> None:
    """No 404, no 5xx but 503, no progress backwards, every strategy once in the results."""
    assert 0 == watch.counts()["404"]
    assert 0 == watch.server_errors()
    assert [] == watch.backwards()
    assert_every_strategy_once(watch)


def epoch_moved(redis_url: str, scan: Scan) -> Callable[[], bool]:
    """True once another worker claimed the scan (its epoch is no longer the first)."""
    return lambda: scan_field(redis_url, scan.scan_id, "epoch") != "1"


def test_sigkill_of_the_owning_worker(make_server: ServerFactory) -> None:
    """The scan of a SIGKILLed worker is finished by another within LEASE_TTL + 2 s."""
    server = make_server()
    redis_url = server.redis_url
    scans = start_scans(server, 4)
    target = scans[0]
    with Watch([server.url], scans) as watch:
        poll_until(lambda: completed(redis_url, target) >= 1, 30)
        victim = owner_pid(redis_url, target.scan_id)
        os.kill(victim, signal.SIGKILL)
        took_over = poll_until(epoch_moved(redis_url, target), 30)
        watch.wait_complete(120)
    print(watch.report("sigkill-worker", takeover_s=round(took_over, 2), victim=victim))
    assert took_over <= LEASE_TTL + 2
    assert_clean(watch)


def test_a_paused_owner_is_fenced_off(make_server: ServerFactory) -> None:
    """A worker stopped past its lease loses the scan; after SIGCONT its writes are refused."""
    server = make_server()
    redis_url = server.redis_url
    scans = start_scans(server, 2)
    target = scans[0]
    with Watch([server.url], scans) as watch:
        poll_until(lambda: completed(redis_url, target) >= 1, 30)
        paused = owner_pid(redis_url, target.scan_id)
        os.kill(paused, signal.SIGSTOP)
        try:
            took_over = poll_until(epoch_moved(redis_url, target), LEASE_TTL + 5)
            poll_until(lambda: completed(redis_url, target) >= len(ALL) - 2, 60)
        finally:
            os.kill(paused, signal.SIGCONT)
        watch.wait_complete(120)
    print(watch.report("paused-owner", takeover_s=round(took_over, 2), paused=paused))
    fenced = [
        line
        for line in server.log_text().splitlines()
        if target.scan_id in line
        and f":{paused}" in line
        and ("lease_lost" in line or "scan_fenced" in line)
    ]
    assert fenced, "the paused owner never noticed it lost the scan"
    assert_clean(watch)
