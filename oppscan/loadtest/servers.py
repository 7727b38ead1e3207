"""The services a load test starts itself: gunicorn running oppscan, on loopback only."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from oppscan.loadtest.client import HttpClient, Target
from oppscan.processes import spawn, terminate
from oppscan.storage import free_port

LOG_TAIL = 3000
MAX_HEALTH_CHECKS = 500


@dataclass(frozen=True)
class ServiceConfig:
    workers: int
    threads: int
    latency_ms: float
    secret: str
    redis_url: str


@dataclass
class Service:
    """One gunicorn master and its workers, in a session of its own."""

    config: ServiceConfig
    directory: Path
    port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / f"gunicorn-{self.config.workers}w-{self.port}.log"

    def start(self, timeout_s: float = 30.0) -> Service:
        argv = [sys.executable, "-m", "gunicorn", "-c", "python:oppscan.gunicorn_config"]
        self._process = spawn(argv, self.log_path, self._environment())
        self._wait_ready(timeout_s)
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        process, self._process = self._process, None
        terminate(process, timeout_s)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-LOG_TAIL:]

    def _environment(self) -> dict[str, str]:
        config = self.config
        return {
            **os.environ,
            "OPPSCAN_REDIS_URL": config.redis_url,
            "OPPSCAN_BIND": f"127.0.0.1:{self.port}",
            "OPPSCAN_WORKERS": str(config.workers),
            "OPPSCAN_THREADS": str(config.threads),
            "OPPSCAN_SECRET": config.secret,
            "OPPSCAN_DATA_DIR": str(self.directory),
            "OPPSCAN_SYNTHETIC_LATENCY_MS": str(config.latency_ms),
            # A few synthetic users start scans far faster than people do: measure capacity,
            # not the per-user limit on discover.
            "OPPSCAN_DISCOVER_RATE_PER_MINUTE": "0",
        }

    def _wait_ready(self, timeout_s: float) -> None:
        client = HttpClient(Target.parse(self.url), timeout_s=1.0)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"gunicorn exited while starting:\n{self.log_tail()}")
            if client.get("/readyz").status == 200:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gunicorn not ready within {timeout_s:.0f} s; see {self.log_path}")


def wait_for_workers(client: HttpClient, workers: int, timeout_s: float = 10.0) -> int:
    """Ask /healthz on new connections until `workers` distinct workers answered, so a run
    does not start while some are still booting; at most `timeout_s` and a few hundred asks.
    The number of workers that answered."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    for _ in range(MAX_HEALTH_CHECKS):
        if len(seen) >= workers or time.monotonic() >= deadline:
            break
        reply = client.get("/healthz")
        if reply.status == 200 and reply.worker:
            seen.add(reply.worker)
        time.sleep(0.01)
    return len(seen)


def flush_store(redis_url: str) -> None:
    """Forget every scan of the previous configuration, so none is taken over and run
    by the next one's workers while it is measured."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        raise RuntimeError(f"could not empty the load test's Redis: {exc}") from exc
    finally:
        client.close()
