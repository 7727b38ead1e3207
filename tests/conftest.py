"""Fixtures shared by every layer: a real redis-server, and clean actor state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest
import redis

from oppscan.processes import free_port
from oppscan.storage import EmbeddedRedis
from tests.support.cluster import ClusterDeployment


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    """No actor outlives its test."""
    yield
    pykka.ActorRegistry.stop_all()


@pytest.fixture(autouse=True)
def _no_real_data_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test reads or writes the user's real data dir: OPPSCAN_DATA_DIR and the
    platform's default (platformdirs, under XDG_DATA_HOME) both point into a
    temporary folder of the test's own."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "xdg-data"))
    monkeypatch.setenv("OPPSCAN_DATA_DIR", str(home / "oppscan-data"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real redis-server on a free loopback port, for the whole session."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), port=free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The session's Redis, flushed before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterDeployment]:
    """A real three-master Redis Cluster on loopback, for the whole session."""
    cluster = ClusterDeployment(tmp_path_factory.mktemp("cluster"), replicas=0).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["one_redis", "cluster"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The store's tests run on one Redis and on a cluster alike, flushed before each."""
    if request.param == "one_redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    cluster: ClusterDeployment = request.getfixturevalue("redis_cluster")
    cluster.flush()
    return cluster.url


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
