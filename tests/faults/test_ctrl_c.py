"""Ctrl-C on `oppscan serve`: every stop is quick, hands scans off, and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import time
from functools import partial
from pathlib import Path

import requests

from oppscan.auth import issue_token
from oppscan.storage import EmbeddedRedis
from tests.faults.conftest import scan_field
from tests.support.polling import poll_until
from tests.support.serve import SECRET, Serve, wait_gone

# A scan runs for seconds: its series come one at a time, 100 ms each.
SLOW = {"OPPSCAN_SYNTHETIC_LATENCY_MS": "100", "OPPSCAN_FETCH_CONCURRENCY": "1"}
ATTEMPTS = 10
STRATEGY_PROCESSES = 2


def start_scan(serve: Serve) -> str:
    """A scan of every strategy over every symbol; its id once it is registered (202)."""
    resp = requests.post(
        f"{serve.url}/api/v1/opportunities/discover",
        json={},
        headers={"Authorization": f"Bearer {issue_token(SECRET, 'demo', 600)}"},
        timeout=10,
    )
    assert 202 == resp.status_code, resp.text
    return str(resp.json()["scan_id"])


def strategies_done(serve: Serve, scan_id: str) -> int:
    """How many of the scan's strategies are done, as its status says."""
    resp = requests.get(
        f"{serve.url}/api/v1/opportunities/status/{scan_id}",
        headers={"Authorization": f"Bearer {issue_token(SECRET, 'demo', 600)}"},
        timeout=10,
    )
    return int(resp.json()["progress"]["strategies_completed"])


def stop_time(serve: Serve) -> tuple[float, list[int]]:
    """Ctrl-C: seconds until the master ended, and the server's processes still running then."""
    pids = serve.pids() + serve.redis_pids()
    started = time.monotonic()
    serve.interrupt()
    try:
        serve.exit_code(30)
        return time.monotonic() - started, wait_gone(pids, 1.0)
    finally:
        serve.kill_all(pids)


def test_ctrl_c_ten_times_in_a_row(tmp_path: Path) -> None:
    """Ten Ctrl-Cs, as soon as the server answers, half of them under a running scan
    (the last one on strategy processes): each stop takes under 5 s, no worker is
    SIGKILLed, no process is left."""
    stops: list[float] = []
    for attempt in range(ATTEMPTS):
        last = attempt == ATTEMPTS - 1  # runs its strategies in child processes
        env = {**SLOW, "OPPSCAN_STRATEGY_PROCESSES": str(STRATEGY_PROCESSES if last else 0)}
        serve = Serve(tmp_path / f"run{attempt}", env=env).start()
        serve.wait_ready()
        if attempt % 2:
            scan_id = start_scan(serve)
            if last:  # the strategy processes are up and running strategies
                poll_until(partial(strategies_done, serve, scan_id), 30)
        took, left = stop_time(serve)
        stops.append(round(took, 2))
        log = serve.log_text()
        assert [] == left, f"attempt {attempt}: still running; see {serve.log_path}"
        assert "SIGKILL" not in log, f"attempt {attempt}: see {serve.log_path}"
        assert 0 == serve.exit_code()
    print(f"\n[ctrl-c] stops_s={stops} max_s={max(stops)}")
    assert [] == [s for s in stops if s >= 5.0]


def test_ctrl_c_releases_a_running_scan_at_once(
    tmp_path: Path, store_server: EmbeddedRedis
) -> None:
    """Ctrl-C under a running scan frees its lease in Redis without waiting for its
    strategies, and says what it hands off."""
    serve = Serve(tmp_path, env={**SLOW, "OPPSCAN_REDIS_URL": store_server.url}).start()
    serve.wait_ready()
    scan_id = start_scan(serve)
    took, left = stop_time(serve)
    print(f"\n[ctrl-c-scan] stop_s={took:.2f}")
    assert ("", "scanning") == (
        scan_field(store_server.url, scan_id, "owner"),
        scan_field(store_server.url, scan_id, "status"),
    )
    assert "stopping: handing off 1 running scan" in serve.log_text()
    assert [] == left
    assert took < 5.0


def test_ctrl_c_cuts_a_graceful_stop_short(tmp_path: Path, store_server: EmbeddedRedis) -> None:
    """SIGTERM waits for running strategies (here up to 60 s); a Ctrl-C meanwhile
    releases the scan at once, without any SIGKILL."""
    env = {**SLOW, "OPPSCAN_REDIS_URL": store_server.url, "OPPSCAN_HANDOFF_TIMEOUT": "60"}
    serve = Serve(tmp_path, env=env).start()
    serve.wait_ready()
    scan_id = start_scan(serve)
    assert serve.process is not None
    os.kill(serve.process.pid, signal.SIGTERM)
    poll_until(lambda: "Worker exiting" in serve.log_text(), 10)  # in its hand-off now
    took, left = stop_time(serve)
    print(f"\n[sigterm-then-ctrl-c] stop_s={took:.2f}")
    assert "" == scan_field(store_server.url, scan_id, "owner")
    assert "SIGKILL" not in serve.log_text()
    assert [] == left
    assert took < 5.0
