"""The master of a Sentinel deployment SIGKILLed mid-scan: the replica takes over,
every worker follows it, and nothing is lost."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oppscan.storage import Keys
from tests.faults.failover import failover_server, judge_failover
from tests.support.polling import poll_until
from tests.support.redis_node import Node
from tests.support.sentinel import SentinelDeployment
from tests.support.server import GunicornServer
from tests.support.watch import Scan, Watch, start_scans


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[SentinelDeployment]:
    started = SentinelDeployment(tmp_path / "sentinel").start()
    yield started
    started.stop()


@pytest.fixture
def server(deployment: SentinelDeployment, tmp_path: Path) -> Iterator[GunicornServer]:
    started = failover_server(deployment.url, tmp_path)
    yield started
    started.stop()


def completed(node: Node, scans: list[Scan]) -> int:
    """Strategies recorded over all `scans`, as that server holds them."""
    client = node.client()
    return sum(int(client.hget(Keys().scan(s.scan_id), "completed") or 0) for s in scans)


def test_a_master_killed_mid_scan_fails_over_and_nothing_is_lost(
    deployment: SentinelDeployment, server: GunicornServer
) -> None:
    """The replica is hung while the master records more results, then the master is
    SIGKILLed: the replica, promoted without those writes, gets them back from their
    owners. Meanwhile pollers read every worker: no answer is a 404 or a 5xx but
    503, and those only until shortly after the promotion; progress never goes
    back; every scan completes with every strategy recorded once."""
    scans = start_scans(server, 4)
    master, replica = deployment.master, deployment.replica
    with Watch([server.url], scans) as watch:
        poll_until(lambda: completed(master, scans) >= 1, 30)
        replica.signal(signal.SIGSTOP)
        replicated = completed(master, scans)
        poll_until(lambda: completed(master, scans) > replicated, 30)  # not on the replica
        at_kill = completed(master, scans)
        killed = time.monotonic()
        master.kill()
        replica.signal(signal.SIGCONT)
        promoted = poll_until(lambda: deployment.master_port() == replica.port, 30)
        finished = watch.wait_complete(120) - killed
    judge_failover(
        watch,
        "sentinel-failover",
        killed,
        promoted,
        results_not_replicated=at_kill - replicated,
        finished_s=round(finished, 2),
    )
