"""Fault-injection fixtures: a redis-server each test controls, and gunicorn servers on it."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from oppscan.processes import free_port
from oppscan.storage import EmbeddedRedis, Keys
from tests.support.server import GunicornServer

LEASE_TTL = 3.0
LATENCY_MS = 100


@pytest.fixture
def store_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test alone, restartable on the same port and data.

    appendfsync always: these tests crash Redis itself, and what they prove is the
    service's behaviour, not how much an fsync policy may lose.
    """
    server = EmbeddedRedis(tmp_path / "redis", port=free_port(), fsync="always").start()
    yield server
    server.signal(signal.SIGCONT)
    server.stop()


ServerFactory = Callable[..., GunicornServer]


@pytest.fixture
def make_server(store_server: EmbeddedRedis, tmp_path: Path) -> Iterator[ServerFactory]:
    """Starts gunicorn servers (4 workers, slow market data, short leases); stops them after."""
    started: list[GunicornServer] = []

    def make(workers: int = 4, args: tuple[str, ...] = (), **env: str) -> GunicornServer:
        settings = {
            "OPPSCAN_LEASE_TTL": str(LEASE_TTL),
            "OPPSCAN_SYNTHETIC_LATENCY_MS": str(LATENCY_MS),
            "OPPSCAN_FETCH_CONCURRENCY": "1",  # a scan's series one at a time: it runs seconds
            **env,
        }
        server = GunicornServer(
            store_server.url, tmp_path, workers=workers, env=settings, args=list(args)
        )
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.stop()


def scan_field(redis_url: str, scan_id: str, name: str) -> str:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return str(client.hget(Keys().scan(scan_id), name) or "")
    finally:
        client.close()


def owner_pid(redis_url: str, scan_id: str) -> int:
    return int(scan_field(redis_url, scan_id, "owner").rsplit(":", 1)[1])
