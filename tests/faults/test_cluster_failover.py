"""A master of a three-master Redis Cluster SIGKILLed mid-scan: its replica takes
over its slots, every worker follows, and nothing is lost."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from oppscan.storage import Keys
from tests.faults.failover import failover_server, judge_failover
from tests.support.cluster import ClusterDeployment
from tests.support.polling import poll_until
from tests.support.redis_node import Node
from tests.support.server import GunicornServer
from tests.support.watch import Scan, Watch, start_scans


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterDeployment]:
    started = ClusterDeployment(tmp_path / "cluster").start()
    yield started
    started.stop()


@pytest.fixture
def server(cluster: ClusterDeployment, tmp_path: Path) -> Iterator[GunicornServer]:
    started = failover_server(cluster.url, tmp_path)
    yield started
    started.stop()


def master_of(cluster: ClusterDeployment, user: str) -> Node:
    """The master that holds `user`'s shard now."""
    return cluster.master_of(Keys().user_scans(user))


def users_on_every_master(cluster: ClusterDeployment, per_master: int = 2) -> list[str]:
    """Users whose shards lie on each master in turn, `per_master` of each."""
    found: dict[int, list[str]] = {node.port: [] for node in cluster.primaries()}
    for n in range(1000):
        user = f"user{n}"
        chosen = found[master_of(cluster, user).port]
        if len(chosen) < per_master:
            chosen.append(user)
        if all(len(users) == per_master for users in found.values()):
            return [user for users in zip(*found.values(), strict=True) for user in users]
    raise AssertionError("a master holds no shard")


def completed(node: Node, scans: list[Scan]) -> int:
    """Strategies recorded over all `scans` that `node` holds."""
    client = node.client()
    total = 0
    for scan in scans:
        try:
            total += int(client.hget(Keys().scan(scan.scan_id), "completed") or 0)
        except redis.ResponseError:  # MOVED: another master's scan
            continue
    return total


def test_a_master_killed_mid_scan_fails_over_and_nothing_is_lost(
    cluster: ClusterDeployment, server: GunicornServer
) -> None:
    """Scans of users on all three masters run; one master's replica is hung while
    the master records more results, then the master is SIGKILLed: the replica,
    promoted without those writes, gets them back from their owners. Meanwhile
    pollers read every worker: no answer is a 404 or a 5xx but 503, and those only
    until shortly after the promotion; progress never goes back; every scan
    completes with every strategy recorded once."""
    users = users_on_every_master(cluster)
    scans = start_scans(server, len(users), users=users)
    master = master_of(cluster, users[0])
    replica = cluster.replica_of(master)
    own = [scan for scan in scans if master_of(cluster, scan.user) is master]
    with Watch([server.url], scans) as watch:
        poll_until(lambda: completed(master, own) >= 1, 30)
        replica.signal(signal.SIGSTOP)
        replicated = completed(master, own)
        poll_until(lambda: completed(master, own) > replicated, 30)  # not on the replica
        at_kill = completed(master, own)
        killed = time.monotonic()
        master.kill()
        replica.signal(signal.SIGCONT)
        promoted = poll_until(lambda: cluster.roles().get(replica.port) == "master", 30)
        finished = watch.wait_complete(120) - killed
    judge_failover(
        watch,
        "cluster-failover",
        killed,
        promoted,
        scans_on_the_killed_master=len(own),
        results_not_replicated=at_kill - replicated,
        finished_s=round(finished, 2),
    )
