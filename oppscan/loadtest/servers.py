"""The services a load test starts itself: gunicorn running oppscan, on loopback only."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import redis

from oppscan.loadtest.client import HttpClient
from oppscan.processes import GunicornProcess

MAX_HEALTH_CHECKS = 500


@dataclass(frozen=True)
class ServiceConfig:
    workers: int
    threads: int
    latency_ms: float
    secret: str
    redis_url: str


def oppscan_service(config: ServiceConfig, directory: Path) -> GunicornProcess:
    """oppscan under gunicorn for one configuration of the load test, not started yet."""
    service = GunicornProcess(directory, config.workers, name=f"gunicorn-{config.workers}w")
    service.env = {
        "OPPSCAN_REDIS_URL": config.redis_url,
        "OPPSCAN_BIND": f"127.0.0.1:{service.port}",
        "OPPSCAN_WORKERS": str(config.workers),
        "OPPSCAN_THREADS": str(config.threads),
        "OPPSCAN_SECRET": config.secret,
        "OPPSCAN_DATA_DIR": str(directory),
        "OPPSCAN_SYNTHETIC_LATENCY_MS": str(config.latency_ms),
        # A few synthetic users start scans far faster than people do: measure capacity,
        # not the per-user limit on discover.
        "OPPSCAN_DISCOVER_RATE_PER_MINUTE": "0",
    }
    return service


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
