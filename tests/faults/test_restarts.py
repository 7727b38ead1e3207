"""Workers replaced by reload or recycling, and a whole host lost: every scan completes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.faults.conftest import LEASE_TTL, ServerFactory, scan_field
from tests.faults.test_worker_death import assert_clean, completed
from tests.support.polling import poll_until
from tests.support.watch import Watch, start_scans


def test_reload_hands_scans_off_at_once(make_server: ServerFactory) -> None:
    """`kill -HUP` replaces every worker; the old ones hand their scans off without a timeout."""
    server = make_server(OPPSCAN_LEASE_TTL="10")
    scans = start_scans(server, 4)
    with Watch([server.url], scans) as watch:
        poll_until(lambda: completed(server.redis_url, scans[0]) >= 1, 30)
        running = [
            s for s in scans if scan_field(server.redis_url, s.scan_id, "status") == "scanning"
        ]
        os.kill(server.master_pid, signal.SIGHUP)

        def handed_off() -> bool:
            return all(
                scan_field(server.redis_url, s.scan_id, "epoch") != "1"
                or scan_field(server.redis_url, s.scan_id, "status") == "complete"
                for s in running
            )

        resumed = poll_until(handed_off, 30)
        watch.wait_complete(120)
    print(watch.report("sighup", resumed_s=round(resumed, 2), running_at_reload=len(running)))
    assert running
    assert resumed < 10 / 2  # well under the 10 s lease
    assert_clean(watch)


def test_max_requests_recycling(make_server: ServerFactory) -> None:
    """Workers recycled every ~50 requests under continuous polling: every scan completes."""
    server = make_server(args=("--max-requests", "50", "--max-requests-jitter", "10"))
    scans = start_scans(server, 4)
    with Watch([server.url], scans) as watch:
        watch.wait_complete(120)
    workers = {o.worker for o in watch.observations if o.worker}
    metrics = Path(server.gunicorn.env["OPPSCAN_DATA_DIR"]) / "metrics"
    files = len(list(metrics.glob("*.db")))
    print(watch.report("max-requests", distinct_workers=len(workers), metrics_files=files))
    assert len(workers) > 4  # workers really were replaced
    # 3 files per live worker (and per one or two being replaced), 2 of the master,
    # 2 archives: dead workers' files are folded, not kept.
    assert files <= 3 * (4 + 2) + 2 + 2
    assert_clean(watch)


def test_a_lost_host_is_covered_by_the_other(make_server: ServerFactory) -> None:
    """Two hosts share Redis; one is SIGKILLed whole; the other finishes every scan."""
    lost = make_server(workers=2)
    survivor = make_server(workers=2)
    scans = start_scans(lost, 4)
    with Watch([lost.url, survivor.url], scans) as watch:
        poll_until(lambda: completed(lost.redis_url, scans[0]) >= 1, 30)
        lost.kill_all()
        killed = time.monotonic()
        watch.urls = [survivor.url]
        finished = watch.wait_complete(120) - killed
    after_kill = [o for o in watch.observations if o.started > killed + 1]
    print(watch.report("host-loss", finished_s=round(finished, 2), lease_ttl=LEASE_TTL))
    assert all(o.code is not None for o in after_kill)
    assert_clean(watch)
