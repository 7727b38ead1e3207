"""Error replies that mean "not now" (OOM, READONLY, BUSY) are outages, on a real redis-server;
a script's own bug stays an error."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import falcon.testing
import pytest
import redis

from oppscan.auth import issue_token
from oppscan.http.app import app_from_runtime
from oppscan.model import ScanParams, now_iso
from oppscan.processes import free_port
from oppscan.runtime import start_runtime, stop_runtime
from oppscan.settings import Settings
from oppscan.storage import (
    CircuitBreaker,
    EmbeddedRedis,
    Keys,
    NewScan,
    ScanStore,
    StoreUnavailable,
    connect,
    open_store,
)
from tests.support.polling import poll_until

LEASE_MS = 60_000
PARAMS = ScanParams(("momentum",), ("BTC-USD",), "1h")
SECRET = "refusals-secret-0123456789abcdef0123"

Refusal = Callable[[redis.Redis], None]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A redis-server of this module alone: its tests reconfigure it."""
    started = EmbeddedRedis(tmp_path_factory.mktemp("refusals"), port=free_port()).start()
    yield started
    started.stop()


@pytest.fixture
def admin(server: EmbeddedRedis) -> Iterator[redis.Redis]:
    """A plain client that puts the server back as it found it after each test."""
    client = redis.Redis.from_url(server.url)
    client.flushall()
    yield client
    client.config_set("maxmemory", 0)
    client.replicaof("NO", "ONE")
    client.close()


@pytest.fixture
def store(server: EmbeddedRedis) -> Iterator[ScanStore]:
    opened = open_store(server.url, "oppscan:", 0.5)
    yield opened
    opened.close()


def new_scan() -> NewScan:
    return NewScan(Keys().new_scan_id("alice"), "alice", PARAMS, now_iso(), "host:1")


def out_of_memory(admin: redis.Redis) -> None:
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)


def read_only(admin: redis.Redis) -> None:
    """A replica of a master that is not there: what the old master becomes after a failover."""
    admin.replicaof("127.0.0.1", free_port())


@pytest.mark.parametrize(
    ("make", "reason"), [(out_of_memory, "OOM"), (read_only, "READONLY")], ids=["oom", "readonly"]
)
def test_a_refused_script_write_is_an_outage(
    store: ScanStore, admin: redis.Redis, make: Refusal, reason: str
) -> None:
    """A write script refused with OOM or READONLY raises StoreUnavailable and opens the breaker."""
    make(admin)
    with pytest.raises(StoreUnavailable) as refused:
        store.register(new_scan(), LEASE_MS)
    assert reason == refused.value.reason
    assert store.breaker.is_open


@pytest.mark.parametrize(
    ("make", "reason"), [(out_of_memory, "OOM"), (read_only, "READONLY")], ids=["oom", "readonly"]
)
def test_a_refused_command_is_an_outage(
    server: EmbeddedRedis, admin: redis.Redis, make: Refusal, reason: str
) -> None:
    """A plain write refused with OOM or READONLY goes through the breaker as an outage."""
    make(admin)
    client, breaker = connect(server.url, 0.5), CircuitBreaker()
    try:
        with pytest.raises(StoreUnavailable) as refused:
            breaker.call(lambda: client.set("k", "v"))
    finally:
        client.close()
    assert reason == refused.value.reason
    assert breaker.is_open


def test_a_script_bug_stays_a_bug(server: EmbeddedRedis, admin: redis.Redis) -> None:
    """A script that hits a key of the wrong type raises ResponseError; the breaker stays closed."""
    admin.set("not-a-hash", "x")
    client, breaker = connect(server.url, 0.5), CircuitBreaker()
    bug = client.register_script("return redis.call('HGET', KEYS[1], 'f')")
    try:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            breaker.call(lambda: bug(keys=["not-a-hash"]))
    finally:
        client.close()
    assert not breaker.is_open


def test_the_probe_counts_a_replica_as_down(store: ScanStore, admin: redis.Redis) -> None:
    """A server that answers PING but refuses writes (a replica) keeps the breaker open."""
    read_only(admin)
    assert False is store.probe()
    admin.replicaof("NO", "ONE")
    assert True is store.probe()


def test_the_probe_counts_a_busy_server_as_down(store: ScanStore, admin: redis.Redis) -> None:
    """While a script runs past lua-time-limit (PING answers BUSY) the probe says down."""
    admin.config_set("lua-time-limit", 10)
    looping = redis.Redis(connection_pool=redis.ConnectionPool(**admin.get_connection_kwargs()))
    spinning = threading.Thread(target=_spin, args=(looping,), daemon=True)
    spinning.start()
    probe = redis.Redis(connection_pool=redis.ConnectionPool(**admin.get_connection_kwargs()))
    try:
        poll_until(lambda: _busy(probe), 10)
        assert False is store.probe()
    finally:
        with contextlib.suppress(redis.ResponseError):  # it may have been killed already
            probe.script_kill()
        spinning.join(10)
        probe.close()
        looping.close()
        admin.config_set("lua-time-limit", 5000)
    assert True is store.probe()


def test_discover_on_a_read_only_store_is_503(
    server: EmbeddedRedis, admin: redis.Redis, tmp_path: Path
) -> None:
    """discover after a failover made the server a replica: 503 with Retry-After, never 500."""
    settings = Settings(redis_url=server.url, data_dir=tmp_path, secret=SECRET)
    runtime = start_runtime(settings)
    try:
        client = falcon.testing.TestClient(app_from_runtime(runtime))
        read_only(admin)
        resp = client.simulate_post(
            "/api/v1/opportunities/discover",
            json={"strategies": ["momentum"], "symbols": ["BTC-USD"], "timeframe": "1h"},
            headers={"Authorization": f"Bearer {issue_token(SECRET, 'alice', 60)}"},
        )
    finally:
        stop_runtime(runtime)
    assert 503 == resp.status_code
    assert "store_unavailable" == resp.json["error"]
    assert float(resp.headers["Retry-After"]) >= 1


def _busy(client: redis.Redis) -> bool:
    try:
        client.ping()
    except redis.ResponseError as exc:
        return str(exc).startswith("BUSY")
    return False


def _spin(client: redis.Redis) -> None:
    """Hold the server in a script until SCRIPT KILL ends it."""
    with contextlib.suppress(redis.ResponseError):
        client.eval("while true do end", 0)
