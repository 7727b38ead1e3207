"""Each worker's resident memory after a soak of many distinct finished scans, with
the finished-scan cache bounded by bytes, against one bounded only by entries.

    python benchmarks/bench_memory.py [--scans 400] [--bound-mb 16] [--workers 2]

Starts a redis-server and two oppscan servers on it (each `--workers` workers):
*bounded* with `OPPSCAN_CACHE_MAX_MB=--bound-mb`, *baseline* with a bound far
past what the soak fills (as if bounded by its 4,096 entries alone). The same
finished scans (full scans: every strategy, every symbol; each a scan of its
own, `force_refresh`) are then read on every worker of both servers, each from
several connections, until every worker has cached them; it prints each
worker's resident memory (`VmRSS`) before and after, next to the bound and to
the size of what was read, and writes benchmarks/out/memory.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from scans import client, start_scan, wait
from servers import Gunicorn, oppscan_server, token

from oppscan.client import Client
from oppscan.storage import EmbeddedRedis

OUT = Path(__file__).resolve().parent / "out"
UNBOUNDED_MB = 100_000


@dataclass(frozen=True)
class Worker:
    pid: int
    before_mb: float
    after_mb: float


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=400, help="distinct finished scans")
    parser.add_argument("--bound-mb", type=int, default=16, help="the bounded server's cache")
    parser.add_argument("--workers", type=int, default=2, help="workers per server")
    parser.add_argument("--reads", type=int, default=6, help="reads of each scan per server")
    parser.add_argument("--out", type=Path, default=OUT)
    return parser.parse_args()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_scans(url: str, count: int) -> tuple[list[str], float]:
    """`count` finished scans of every strategy; their ids and mean results size."""
    api = client(url, token("soak"))
    ids, sizes = [], []
    for _ in range(count):
        scan_id = start_scan(api, force_refresh=True)
        wait(api, scan_id, poll=0.05, timeout=120)
        results = api.scan(scan_id).results()
        assert results is not None
        sizes.append(len(json.dumps(results.body)))
        ids.append(scan_id)
    api.close()
    return ids, statistics.fmean(sizes)


def soak(server: Gunicorn, ids: list[str], reads: int) -> list[Worker]:
    """Read every scan's status and results `reads` times on new connections (so that
    every worker sees each); each worker's RSS before and after."""
    pids = server.worker_pids()
    before = {pid: rss_mb(pid) for pid in pids}
    with Client(server.url, token("soak"), spread=True) as spread:
        for scan_id in ids:
            for _ in range(reads):
                spread.send("GET", f"/api/v1/opportunities/results/{scan_id}")
    return [Worker(pid, before[pid], rss_mb(pid)) for pid in pids]


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="oppscan-memory-"))
    redis = EmbeddedRedis(work / "redis").start()
    settings = {
        "result_ttl": "86400",
        "discover_rate_per_minute": "0",
        "max_active_scans_per_user": "1000",
    }
    bounded = oppscan_server(
        "bounded", redis.url, work, args.workers, cache_max_mb=str(args.bound_mb), **settings
    )
    baseline = oppscan_server(
        "baseline", redis.url, work, args.workers, cache_max_mb=str(UNBOUNDED_MB), **settings
    )
    try:
        for server in (bounded, baseline):
            server.start()
        ids, mean_size = run_scans(bounded.url, args.scans)
        read_mb = len(ids) * mean_size / 2**20
        servers = {"bounded": bounded, "baseline": baseline}
        figures = {name: soak(server, ids, args.reads) for name, server in servers.items()}
    finally:
        for server in (bounded, baseline):
            server.stop()
        redis.stop()
    print(
        f"{len(ids)} finished scans, results {mean_size / 1024:.1f} KB each on average, "
        f"{read_mb:.1f} MB in all; bound {args.bound_mb} MB per worker"
    )
    print(f"{'server':<9} {'worker':>7} {'RSS before':>11} {'after':>8} {'growth':>8}")
    for name, workers in figures.items():
        for w in workers:
            growth = w.after_mb - w.before_mb
            print(
                f"{name:<9} {w.pid:>7} {w.before_mb:>8.1f} MB {w.after_mb:>5.1f} MB"
                f" {growth:>5.1f} MB"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    document = {
        "scans": len(ids),
        "mean_results_bytes": mean_size,
        "bound_mb": args.bound_mb,
        "workers": {n: [w.__dict__ for w in ws] for n, ws in figures.items()},
    }
    (args.out / "memory.json").write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
