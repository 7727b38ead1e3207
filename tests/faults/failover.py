"""What the failover tests share: the server they run, and how they judge a failover."""

from __future__ import annotations

from pathlib import Path

from tests.faults.conftest import LATENCY_MS, LEASE_TTL
from tests.faults.test_worker_death import assert_clean
from tests.support.server import GunicornServer
from tests.support.watch import Watch

# After the promotion a worker may answer 503 until its circuit breaker's next
# probe (at most 2 s later) and then for the 2 s in which owners write back
# what the replica had not received.
AFTER_PROMOTION_S = 2.0 + 2.0 + 0.5


def failover_server(redis_url: str, tmp_path: Path) -> GunicornServer:
    """4 workers, short leases, slow market data (scans run for seconds)."""
    env = {
        "OPPSCAN_LEASE_TTL": str(LEASE_TTL),
        "OPPSCAN_SYNTHETIC_LATENCY_MS": str(LATENCY_MS),
        "OPPSCAN_FETCH_CONCURRENCY": "1",
    }
    return GunicornServer(redis_url, tmp_path, workers=4, env=env).start()


def judge_failover(
    watch: Watch, name: str, killed: float, promoted: float, **figures: object
) -> None:
    """Print the figures; then no 404, no 5xx but 503, no progress backwards, every
    strategy once, and no 503 later than shortly after the promotion."""
    unavailable = [o.started - killed for o in watch.observations if o.code == 503]
    last_503 = max(unavailable, default=0.0)
    print(
        watch.report(
            name,
            **figures,
            promoted_s=round(promoted, 2),
            unavailable_from_s=round(min(unavailable, default=0.0), 2),
            unavailable_until_s=round(last_503, 2),
        )
    )
    assert_clean(watch)
    assert last_503 <= promoted + AFTER_PROMOTION_S, "503s went on after the failover"
