"""Starts of `oppscan serve` that cannot work: one line, a non-zero exit, nothing left running."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from oppscan.auth import issue_token
from oppscan.client import Client, ServiceUnreachable
from oppscan.processes import free_port
from oppscan.storage import EmbeddedRedis
from tests.support.cluster import ClusterDeployment
from tests.support.polling import poll_until
from tests.support.serve import SECRET, Serve, wait_gone


def processes_in(directory: Path) -> list[int]:
    """Live processes working in `directory` or naming it (master, workers, redis-server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            if cwd.startswith(str(directory)) or str(directory) in cmdline:
                found.append(int(entry.name))
    return found


def failed_start(serve: Serve) -> tuple[int, list[str]]:
    """Start it and wait for it to end: its exit status and what it said went wrong:
    the error events of its log stream, and any line that is not JSON (the command's
    own, about its arguments, before gunicorn starts)."""
    code = serve.start().exit_code(15)
    said = []
    for line in filter(None, serve.log_text().splitlines()):
        event = json.loads(line) if line.startswith("{") else {"level": "error", "event": line}
        if event["level"] == "error":
            said.append(event["event"])
    return code, said


@pytest.fixture
def port_in_use() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield int(listener.getsockname()[1])


def test_a_port_in_use_fails_the_start_and_leaves_no_redis(
    tmp_path: Path, port_in_use: int
) -> None:
    """The embedded Redis is not started (or not left) when the port is taken."""
    serve = Serve(tmp_path, port=port_in_use)
    code, lines = failed_start(serve)
    assert 1 == code
    assert [f"oppscan: cannot listen on 127.0.0.1:{port_in_use}: address already in use"] == lines
    assert [] == wait_gone(processes_in(tmp_path), 1.0)


def test_a_missing_csv_folder_fails_the_start_in_one_line(tmp_path: Path) -> None:
    """`OPPSCAN_MARKET=csv:/no/such/dir` is found by the master, before any worker boots."""
    missing = tmp_path / "no-such-dir"
    serve = Serve(tmp_path, env={"OPPSCAN_MARKET": f"csv:{missing}"})
    code, lines = failed_start(serve)
    assert 1 == code
    assert [f"oppscan: OPPSCAN_MARKET=csv:{missing}: {missing}: not a directory of CSV files"] == (
        lines
    )
    assert "Traceback" not in serve.log_text()
    assert [] == wait_gone(processes_in(tmp_path), 1.0)


def test_one_data_dir_serves_one_server(tmp_path: Path) -> None:
    """A second `oppscan serve` on a data dir in use exits naming the first one's pid,
    and starts no second redis-server on the same append-only file."""
    shared = {"OPPSCAN_DATA_DIR": str(tmp_path / "data")}
    first = Serve(tmp_path / "first", env=shared).start()
    second = Serve(tmp_path / "second", env=shared)
    try:
        first.wait_ready()
        assert first.process is not None
        code, lines = failed_start(second)
        assert 1 == code
        assert [
            f"oppscan: data dir {tmp_path / 'data'} is in use by process {first.process.pid} "
            "(another oppscan serve); stop it or set OPPSCAN_DATA_DIR"
        ] == lines
        assert first.redis_pids() == processes_in(tmp_path / "data" / "redis")
    finally:
        for serve in (first, second):
            if serve.process is not None and not serve.exited():
                serve.interrupt()
                serve.exit_code()


def test_an_invalid_setting_fails_the_start_in_one_line(tmp_path: Path) -> None:
    """A setting that does not parse is one line naming it, before anything starts."""
    code, lines = failed_start(Serve(tmp_path, env={"OPPSCAN_WORKERS": "two"}))
    assert 1 == code
    assert ["oppscan: OPPSCAN_WORKERS must be an integer, got 'two'"] == lines
    assert [] == wait_gone(processes_in(tmp_path), 1.0)


def test_an_invalid_redis_url_fails_the_start_before_ready(tmp_path: Path) -> None:
    """A Redis URL redis-py cannot use is one line from the master, without its password."""
    url = "redis://:hunter2@127.0.0.1:notaport/0"
    serve = Serve(tmp_path, env={"OPPSCAN_REDIS_URL": url})
    code, lines = failed_start(serve)
    assert 1 == code
    assert [
        "oppscan: OPPSCAN_REDIS_URL is not a Redis URL: "
        "Port could not be cast to integer value as 'notaport'"
    ] == lines
    assert "hunter2" not in serve.log_text()


def unreachable_logged(serve: Serve, address: str) -> bool:
    events = [json.loads(line) for line in serve.log_text().splitlines() if line]
    return any(e["event"] == "store_unreachable" and e["redis"] == address for e in events)


def test_an_unreachable_redis_is_logged_at_start_and_waited_for(tmp_path: Path) -> None:
    """The server starts, logs Redis's host and port (not its password), answers
    `/readyz` 503, and is ready once Redis comes up."""
    port = free_port()
    env = {"OPPSCAN_REDIS_URL": f"redis://:hunter2@127.0.0.1:{port}/0"}
    serve = Serve(tmp_path, env=env).start()
    store = EmbeddedRedis(tmp_path / "redis", port=port)
    try:
        poll_until(lambda: unreachable_logged(serve, f"127.0.0.1:{port}"), 15)
        assert 503 == requests.get(f"{serve.url}/readyz", timeout=5).status_code
        assert "hunter2" not in serve.log_text()
        started = time.monotonic()
        store.start()
        client = redis.Redis(port=port)
        client.config_set("requirepass", "hunter2")
        client.close()
        serve.wait_ready(timeout=10)
        print(f"\n[unreachable-redis] ready_s_after_redis_start={time.monotonic() - started:.2f}")
        assert 200 == requests.get(f"{serve.url}/readyz", timeout=5).status_code
    finally:
        serve.interrupt()
        serve.exit_code()
        store.stop()


def test_an_unreachable_cluster_is_logged_at_start_and_waited_for(tmp_path: Path) -> None:
    """With a Redis Cluster none of whose nodes answers yet, the server starts all
    the same, logs the nodes it was given, answers `/readyz` 503, and is ready
    (and runs scans) once the cluster is up."""
    cluster = ClusterDeployment(tmp_path / "cluster", replicas=0)
    serve = Serve(tmp_path, env={"OPPSCAN_REDIS_URL": cluster.url}).start()
    nodes = ",".join(f"127.0.0.1:{port}" for port in cluster.ports[:2])
    try:
        poll_until(lambda: unreachable_logged(serve, f"cluster {nodes}"), 15)
        assert 503 == requests.get(f"{serve.url}/readyz", timeout=5).status_code
        started = time.monotonic()
        cluster.start()
        serve.wait_ready(timeout=15)
        print(
            f"\n[unreachable-cluster] ready_s_after_cluster_start={time.monotonic() - started:.2f}"
        )
        with Client(serve.url, issue_token(SECRET, "ana", 600)) as api:
            try:
                scan = api.discover(strategies=["momentum"], symbols=["BTC-USD"])
                assert "complete" == scan.wait(interval=0.05, timeout=30).status
            except ServiceUnreachable:
                raise AssertionError(f"the server went away:\n{serve.log_text()[-6000:]}") from None
    finally:
        serve.interrupt()
        serve.exit_code()
        cluster.stop()
