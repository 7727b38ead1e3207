"""Redis crashes or hangs mid-scan: answers are 503 (never 404), fast, and nothing is lost."""

from __future__ import annotations

import collections
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import requests

from oppscan.processes import free_port
from oppscan.storage import EmbeddedRedis
from tests.faults.conftest import ServerFactory, scan_field
from tests.faults.test_worker_death import assert_clean, completed
from tests.support.polling import poll_until
from tests.support.server import GunicornServer
from tests.support.watch import Watch, start_scans

OUTAGE_S = 3.0


def p99(values: list[float]) -> float:
    return values[min(len(values) - 1, int(len(values) * 0.99))] if values else 0.0


def run_outage(
    make_server: ServerFactory, store_server: EmbeddedRedis, name: str, crash: bool
) -> None:
    # Default lease (10 s): owners keep their scans through a 3 s outage.
    server = make_server(OPPSCAN_LEASE_TTL="10")
    scans = start_scans(server, 4)
    with Watch([server.url], scans) as watch:
        poll_until(lambda: completed(server.redis_url, scans[0]) >= 1, 30)
        down = time.monotonic()
        if crash:
            store_server.kill()
        else:
            store_server.signal(signal.SIGSTOP)
        time.sleep(OUTAGE_S / 2)  # the outage itself: what the test injects, not a wait
        assert (503, 503) == (readyz(server.url), discover_status(server, scans[0].token))
        time.sleep(OUTAGE_S / 2)
        if crash:
            store_server.start()
        else:
            store_server.signal(signal.SIGCONT)
        up = time.monotonic()
        ready = poll_until(lambda: readyz(server.url) == 200, 30)
        watch.wait_complete(120)
    during = watch.counts((down, up))
    slow = p99(watch.latencies((down + 1.0, up)))  # past the first timeouts, the breaker is open
    print(
        watch.report(
            name,
            outage_503=during["503"],
            outage_200=during["200"],
            p99_ms_during_outage=round(slow * 1000, 1),
            recovered_s=round(ready, 2),
        )
    )
    assert during["503"] > 0
    assert slow < (0.1 if crash else 1.0)
    assert "WORKER TIMEOUT" not in server.log_text()
    assert_clean(watch)
    assert_one_event_per_outage(server)


def assert_one_event_per_outage(server: GunicornServer) -> None:
    """Each worker logged the outage twice whatever its traffic: `store_down` when its
    breaker opened, `store_reconnected` (with the 503s counted) when it closed; never
    a line per request."""
    events = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    scans = [e for e in events if e.get("store") == "scans"]
    downs = collections.Counter(e["worker"] for e in scans if e["event"] == "store_down")
    back = [e for e in scans if e["event"] == "store_reconnected"]
    assert [] == [e for e in events if e["event"] == "store_unavailable"]
    assert downs
    assert {1} == set(downs.values()), downs
    assert sorted(downs) == sorted(e["worker"] for e in back)
    assert all(e["down_s"] > 0 for e in back)
    assert sum(e["requests_refused"] for e in back) > 0


def discover_status(server: GunicornServer, token: str) -> int:
    """A discover during the outage: a 202 would claim a registration that cannot happen."""
    resp = requests.post(
        f"{server.url}/api/v1/opportunities/discover",
        json={"symbols": ["BTC-USD"], "timeframe": "4h"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    return resp.status_code


def readyz(url: str) -> int:
    try:
        return requests.get(f"{url}/readyz", timeout=2).status_code
    except requests.RequestException:
        return 0


def test_redis_crash_and_restart(make_server: ServerFactory, store_server: EmbeddedRedis) -> None:
    """SIGKILL Redis for 3 s then restart it on its data: 503s only, then every scan completes."""
    run_outage(make_server, store_server, "redis-sigkill", crash=True)


def test_redis_hung(make_server: ServerFactory, store_server: EmbeddedRedis) -> None:
    """SIGSTOP Redis for 3 s (a hung server): requests fail within 1 s, workers survive."""
    run_outage(make_server, store_server, "redis-sigstop", crash=False)


def restart_redis(store_server: EmbeddedRedis, data: Callable[[Path], None]) -> float:
    """SIGKILL Redis, change its data files as `data` says, start it on them again."""
    store_server.kill()
    data(store_server.directory)
    store_server.start()
    return time.monotonic()


def forget_everything(directory: Path) -> None:
    for leftover in (*directory.glob("*.aof"), *directory.glob("*.rdb")):
        leftover.unlink()


def test_redis_restarted_without_its_data(
    make_server: ServerFactory, store_server: EmbeddedRedis
) -> None:
    """Redis comes back empty mid-scan: owners write their scans back, nobody answers
    404 meanwhile, and every scan completes with every strategy once."""
    server = make_server(OPPSCAN_LEASE_TTL="10")
    scans = start_scans(server, 4)
    with Watch([server.url], scans) as watch:
        poll_until(lambda: completed(server.redis_url, scans[0]) >= 1, 30)
        up = restart_redis(store_server, forget_everything)
        restored = poll_until(
            lambda: all(scan_field(server.redis_url, s.scan_id, "status") for s in scans), 30
        )
        watch.wait_complete(120)
    after = watch.counts((up, up + 30))
    print(
        watch.report(
            "redis-empty-restart",
            restored_s=round(restored, 2),
            after_restart_503=after["503"],
        )
    )
    assert_clean(watch)


def test_redis_losing_its_last_writes(make_server: ServerFactory, tmp_path: Path) -> None:
    """Redis crashes under `appendfsync everysec` and comes back from a copy of its
    append-only file one second old (the writes it had not synced are gone): owners
    write back what Redis forgot; no progress goes back, nothing is lost or repeated."""
    server_dir = tmp_path / "everysec"
    store = EmbeddedRedis(server_dir, port=free_port(), fsync="everysec").start()
    try:
        server = make_server(OPPSCAN_LEASE_TTL="10", OPPSCAN_REDIS_URL=store.url)
        scans = start_scans(server, 4)
        with Watch([server.url], scans) as watch:
            poll_until(lambda: completed(store.url, scans[0]) >= 1, 30)
            snapshot = (server_dir / "appendonly.aof").read_bytes()
            at_copy = sum(completed(store.url, s) for s in scans)
            poll_until(lambda: sum(completed(store.url, s) for s in scans) > at_copy + 2, 30)
            lost = sum(completed(store.url, s) for s in scans) - at_copy

            def one_second_ago(directory: Path) -> None:
                (directory / "appendonly.aof").write_bytes(snapshot)

            up = restart_redis(store, one_second_ago)
            watch.wait_complete(120)
        after = watch.counts((up, up + 30))
        print(
            watch.report(
                "redis-lost-last-writes",
                results_forgotten=lost,
                after_restart_503=after["503"],
            )
        )
        assert lost > 0
        assert_clean(watch)
    finally:
        store.stop()
