"""One Redis against a three-master Redis Cluster: status reads and scans per second,
and Redis CPU per request from `INFO`, so an operator knows when to move.

Both stores run side by side, each under the same oppscan deployment: *main*
(2 workers) serves the load, *owner* (1 worker, slow market data) owns a long
scan whose status main's workers read from the store. Figures alternate between
the two stores, `--reps` times, and each ratio is cluster over one Redis. The
cluster has three masters and no replicas, like for like with one Redis.
Redis CPU is `used_cpu_user + used_cpu_sys` summed over every node, net of what
the workers' stewards cost with no request at all (measured first, per store).

    python benchmarks/bench_cluster.py               # about 2 minutes on 2 cores
    python benchmarks/bench_cluster.py --seconds 5 --reps 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from loadgen import LoadGenerator, pick
from report import Figure, table, write_json
from scans import client, start_scan, status_path
from servers import Gunicorn, oppscan_server, token

from oppscan.processes import free_port
from oppscan.storage import EmbeddedRedis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the suite's cluster launcher
from tests.support.cluster import ClusterDeployment

OUT = Path(__file__).resolve().parent / "out"
SCAN_BODY: dict[str, Any] = {"strategies": ["momentum", "rsi_reversal"], "timeframe": "1h"}


@dataclass
class Store:
    """One of the two stores, the oppscan servers on it, and its nodes to ask `INFO`."""

    name: str
    url: str
    nodes: list[redis.Redis]
    main: Gunicorn | None = None
    owner: Gunicorn | None = None
    long_scan: str = ""
    idle_cpu_per_s: float = 0.0
    status_runs: list[tuple[float, float]] = field(default_factory=list)  # (req/s, cpu us/req)
    scan_runs: list[tuple[float, float]] = field(default_factory=list)  # (scans/s, cpu ms/scan)

    def cpu_seconds(self) -> float:
        total = 0.0
        for node in self.nodes:
            cpu = node.info("cpu")
            total += float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        return total


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one run")
    parser.add_argument("--reps", type=int, default=3, help="runs per store and figure")
    parser.add_argument("--connections", type=int, default=16, help="wrk's connections")
    parser.add_argument("--scanners", type=int, default=8, help="users starting scans at once")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--out", type=Path, default=OUT)
    return parser.parse_args(argv)


def start_store_servers(stack: ExitStack, store: Store, work: Path, connections: int) -> None:
    tag = "one" if store.name == "one Redis" else "cluster"
    unlimited = {"discover_rate_per_minute": "0", "max_active_scans_per_user": "1000"}
    store.main = oppscan_server(f"main-{tag}", store.url, work, 2, **unlimited)
    store.main.connections = connections
    # One fetch at a time at 5 s each: the long scan runs for minutes, past the benchmark.
    slow = {"synthetic_latency_ms": "5000", "fetch_concurrency": "1"}
    store.owner = oppscan_server(f"owner-{tag}", store.url, work, 1, **slow)
    for server in (store.main, store.owner):
        stack.callback(server.stop)
        server.start()
    with client(store.owner.url, token("reader")) as api:
        symbols = api.symbols()
        store.long_scan = start_scan(api, symbols=symbols[:60])


def measure_idle(store: Store, seconds: float) -> None:
    before = store.cpu_seconds()
    time.sleep(seconds)
    store.idle_cpu_per_s = (store.cpu_seconds() - before) / seconds


def net_cpu(store: Store, run: Callable[[], float]) -> tuple[float, float]:
    """What `run` returns (a count), and the Redis CPU seconds it cost beyond idle."""
    before, started = store.cpu_seconds(), time.monotonic()
    count = run()
    elapsed = time.monotonic() - started
    return count, max(0.0, store.cpu_seconds() - before - store.idle_cpu_per_s * elapsed)


def status_run(store: Store, load: LoadGenerator, seconds: float) -> tuple[float, float]:
    """Status reads of the long scan on main, for `seconds`: (req/s, Redis CPU us each)."""
    assert store.main is not None
    url = store.main.url + status_path(store.long_scan)
    done: dict[str, float] = {}

    def run() -> float:
        result = load.run(url, token("reader"), seconds)
        done["rps"] = result.rps
        return float(result.requests)

    requests, cpu = net_cpu(store, run)
    return done["rps"], cpu / requests * 1e6 if requests else 0.0


def scan_run(store: Store, scanners: int, seconds: float) -> tuple[float, float]:
    """`scanners` users each start a small scan (2 strategies, 2 symbols), wait for it
    and start the next, for `seconds`: (scans finished per second, Redis CPU ms each)."""
    assert store.main is not None
    url = store.main.url
    finished = [0] * scanners
    stop_at = time.monotonic() + seconds

    def user(n: int) -> None:
        with client(url, token(f"scanner{n}")) as api:
            symbols = api.symbols()
            k = 0
            while time.monotonic() < stop_at:
                chosen = [symbols[(n * 7 + k + j) % len(symbols)] for j in range(2)]
                scan = api.discover(symbols=chosen, force_refresh=True, **SCAN_BODY)
                if scan.wait(interval=0.02, timeout=60).status == "complete":
                    finished[n] += 1
                k += 1

    def run() -> float:
        threads = [threading.Thread(target=user, args=(n,)) for n in range(scanners)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return float(sum(finished))

    started = time.monotonic()
    scans, cpu = net_cpu(store, run)
    wall = time.monotonic() - started
    return scans / wall, cpu / scans * 1e3 if scans else 0.0


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def figures(one: Store, cluster: Store) -> list[Figure]:
    def row(key: str, name: str, unit: str, index: int, runs: str) -> Figure:
        value = median([r[index] for r in getattr(cluster, runs)])
        base = median([r[index] for r in getattr(one, runs)])
        return Figure(
            key, name, value, unit, base, "one Redis", value / base if base else None, "-", None
        )

    return [
        row("C1", "status reads, store path", "req/s", 0, "status_runs"),
        row("C2", "Redis CPU per status read", "us", 1, "status_runs"),
        row("C3", "scans finished (2 strategies x 2 symbols)", "scans/s", 0, "scan_runs"),
        row("C4", "Redis CPU per scan", "ms", 1, "scan_runs"),
        Figure(
            "C5",
            "Redis CPU with no request (stewards; a cluster's gossip)",
            cluster.idle_cpu_per_s * 100,
            "% of a core",
            one.idle_cpu_per_s * 100,
            "one Redis",
            None,
            "-",
            None,
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load = pick(args.client, args.connections)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-cluster-")))
        single = EmbeddedRedis(work / "redis", port=free_port()).start()
        stack.callback(single.stop)
        deployment = ClusterDeployment(work / "cluster", replicas=0).start()
        stack.callback(deployment.stop)
        one = Store("one Redis", single.url, [redis.Redis.from_url(single.url)])
        cluster = Store("cluster", deployment.url, [n.client() for n in deployment.nodes])
        stores = [one, cluster]
        for store in stores:
            start_store_servers(stack, store, work, args.connections)
        print(f"load: {load.name}, {args.connections} connections; {args.reps} reps", flush=True)
        for store in stores:
            measure_idle(store, args.seconds)
            # Untimed: the first scans of a server fill its caches and pools.
            status_run(store, load, 1.0)
            scan_run(store, args.scanners, args.seconds)
        for rep in range(args.reps):
            for store in stores if rep % 2 == 0 else stores[::-1]:
                store.status_runs.append(status_run(store, load, args.seconds))
                store.scan_runs.append(scan_run(store, args.scanners, args.seconds))
        results = figures(one, cluster)
    print(table(results))
    details = {
        store.name: {
            "idle_cpu_per_s": store.idle_cpu_per_s,
            "status_runs": store.status_runs,
            "scan_runs": store.scan_runs,
        }
        for store in stores
    }
    write_json(args.out / "cluster.json", results, details, vars(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
