"""A strategy that never returns: its scans complete at the deadline, and the worker
that holds the stuck thread still stops at once on SIGTERM."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.faults.conftest import ServerFactory, owner_pid
from tests.support.plugins import HANG, install_hang_plugin
from tests.support.polling import poll_until
from tests.support.watch import Watch, start_scans

DEADLINE_S = 2


def gone(pid: int) -> bool:
    """True once the process ended and its parent reaped it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_hung_strategy_times_out_and_never_holds_a_stop(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """Scans with a hung plugin complete with it `error`; its worker then stops on SIGTERM."""
    plugins = install_hang_plugin(tmp_path / "plugins")
    path = os.pathsep.join(p for p in (str(plugins), os.environ.get("PYTHONPATH", "")) if p)
    server = make_server(OPPSCAN_STRATEGY_TIMEOUT=str(DEADLINE_S), PYTHONPATH=path)
    started = time.monotonic()
    scans = start_scans(server, 2)  # every strategy, the plugin's included
    with Watch([server.url], scans) as watch:
        finished = watch.wait_complete(60) - started
        stuck_worker = owner_pid(server.redis_url, scans[0].scan_id)
        os.kill(stuck_worker, signal.SIGTERM)
        stopped = poll_until(lambda: gone(stuck_worker), 15)
    hung = [body["strategy_performance"][HANG] for body in watch.results().values()]  # type: ignore[index]
    log = server.log_text()
    print(
        watch.report(
            "hung-strategy",
            deadline_s=DEADLINE_S,
            scans_complete_s=round(finished, 2),
            worker_stopped_s=round(stopped, 2),
            sigkills=log.count("SIGKILL"),
        )
    )
    assert [("error", f"timed out after {DEADLINE_S} s")] * 2 == [
        (p["status"], p["error"]) for p in hung
    ]
    assert stopped < 5, "a stuck strategy thread held up the worker's exit"
    assert 0 == log.count("SIGKILL")
    assert 0 == log.count("WORKER TIMEOUT")
    assert 0 == watch.counts()["404"]
    assert 0 == watch.server_errors()
    assert [] == watch.backwards()
