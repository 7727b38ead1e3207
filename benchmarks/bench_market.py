"""Market data: scan time and series fetched against fetch latency, cold, warm and shared.

    python benchmarks/bench_market.py              # about 1.5 minutes on 2 cores
    python benchmarks/bench_market.py --quick      # 0 and 100 ms per fetch only, 45 s
    python benchmarks/bench_market.py --only cold warm --latencies 0 1000

Every scan covers the default universe (the 60 synthetic symbols, timeframe
1h) with one strategy (momentum) or all 14, on a synthetic source that sleeps
`latency` per fetch. In this process, against an embedded redis-server:

- **cold**: one scan on a fresh runtime (`start_runtime` + `ScanService`, a
  key prefix no other run used), so neither its memory nor Redis holds a
  series; the series it fetched, from its results' `metadata.market` and from
  `oppscan_market_fetches_total`;
- **baseline**, right after each cold scan at up to 100 ms per fetch: the old
  way, the same strategies straight on the source, 4 at a time, each fetching
  every series it reads (at 1 s per fetch it would take about 4 minutes);
- **warm**: another user's full scan right after the cold one at the highest
  latency, in the same worker and then in a second one (its copy in Redis).

Then **concurrent**: 8 users start a full scan each at once on gunicorn with
4 workers; the series fetched across the deployment (results and `/metrics`).
Prints the figures and the targets, and writes them to benchmarks/out/market.json
(the servers' logs to benchmarks/out/logs/). Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pykka
import redis
import requests
from bench_service import keep_logs, settle
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from report import machine
from servers import Gunicorn, oppscan_server, token

from oppscan.actors.strategy_run import run_strategy
from oppscan.client import Client
from oppscan.logs import configure as configure_logs
from oppscan.market import MarketData
from oppscan.market.base import Bars, FloatArray, Freshness, SeriesKey, candle_freshness
from oppscan.market.synthetic import SyntheticMarket
from oppscan.model import ScanParams, StrategyResult
from oppscan.processes import free_port
from oppscan.runtime import start_runtime, stop_runtime
from oppscan.service import ScanService
from oppscan.settings import Settings
from oppscan.storage import EmbeddedRedis, Keys
from oppscan.strategies import StrategyContext, Universe, available_strategies, series_needed

OUT = Path(__file__).resolve().parent / "out"
PARTS = ("cold", "baseline", "warm", "concurrent")
TIMEFRAME = "1h"
ONE = "momentum"  # the one-strategy scan: bars of every symbol on the primary venue
OLD_THREADS = 4  # the old way's strategy threads; each strategy fetched its series in turn
METRIC = "oppscan_market_fetches_total"
OUTCOMES = ("fetched", "cached", "shared", "error", "rate_limited")
POLL = 0.01  # seconds between status reads in this process
HTTP_POLL = 0.05  # seconds between a user's status requests
COLD_LIMIT, WARM_LIMIT = 20.0, 2.0  # targets, seconds: a full scan at 1 s per fetch, a warm one


# -- what is measured ----------------------------------------------------------------


@dataclass(frozen=True)
class Scanned:
    """One scan as its user saw it."""

    seconds: float  # from discover until the status read terminal
    status: str
    market: Mapping[str, Any]  # `metadata.market` of its results
    counted: Mapping[str, int]  # oppscan_market_fetches_total over the scan, by outcome
    timeline: tuple[tuple[float, int], ...] = ()  # (seconds, strategies done) at each change


@dataclass(frozen=True)
class OldWay:
    """The strategies run straight on the source, each fetching what it reads."""

    seconds: float
    fetches: int
    statuses: Mapping[str, int]


@dataclass(frozen=True)
class Cold:
    latency_ms: float
    strategies: int
    series: int  # distinct series the scan reads
    new: Scanned | None
    old: OldWay | None


@dataclass(frozen=True)
class UserScan:
    """One user's scan on the gunicorn deployment."""

    started: float
    ended: float
    status: str
    owner: str
    market: Mapping[str, Any]


@dataclass(frozen=True)
class Shared:
    """`users` full scans started at once on `workers` gunicorn workers."""

    latency_ms: float
    workers: int
    series: int
    scans: tuple[UserScan, ...]
    metrics: Mapping[str, int]  # oppscan_market_fetches_total from /metrics, by outcome

    @property
    def seconds(self) -> float:
        return max(s.ended for s in self.scans) - min(s.started for s in self.scans)

    def total(self, outcome: str) -> int:
        return sum(int(s.market.get(outcome, 0)) for s in self.scans)


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    target: str
    passed: bool

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"


@dataclass
class Bench:
    args: argparse.Namespace
    redis_url: str
    work: Path
    symbols: tuple[str, ...]
    prefixes: Iterator[int] = field(default_factory=itertools.count)
    cold: list[Cold] = field(default_factory=list)
    warm: dict[str, Scanned] = field(default_factory=dict)
    shared: list[Shared] = field(default_factory=list)

    def prefix(self) -> str:
        """A key prefix no other run used: nothing in Redis for it yet."""
        return f"bench-market-{os.getpid()}-{next(self.prefixes)}:"

    def series(self, names: Sequence[str]) -> int:
        return distinct_series(names, self.symbols)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, help="parts to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="0 and 100 ms per fetch only")
    parser.add_argument("--latencies", nargs="+", type=float, help="ms per fetch, cold scans")
    parser.add_argument(
        "--baseline-max-ms", type=float, default=100.0, help="the old way runs up to this latency"
    )
    parser.add_argument("--shared-latencies", nargs="+", type=float, help="ms, concurrent part")
    parser.add_argument("--users", type=int, default=8, help="users starting a scan at once")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers, concurrent part")
    parser.add_argument("--settle", type=float, default=20.0, help="wait for a quiet machine")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.only = args.only or list(PARTS)
    args.latencies = args.latencies or ([0.0, 100.0] if args.quick else [0.0, 100.0, 1000.0])
    args.shared_latencies = args.shared_latencies or ([100.0] if args.quick else [100.0, 1000.0])
    return args


# -- the series a scan reads ---------------------------------------------------------


def distinct_series(names: Sequence[str], symbols: tuple[str, ...]) -> int:
    """What the scan's strategies read, each series once: the fetches to expect."""
    strategies = available_strategies()
    venues = tuple(SyntheticMarket().venues())
    universe = Universe(symbols, TIMEFRAME, venues)
    return len(set().union(*(series_needed(strategies[name], universe) for name in names)))


def generate_once(names: Sequence[str], symbols: tuple[str, ...]) -> None:
    """The synthetic source memoises what it generates, per process: generate it all
    before anything is timed, so that neither way pays for it."""
    market = SyntheticMarket()
    strategies = available_strategies()
    universe = Universe(symbols, TIMEFRAME, tuple(market.venues()))
    for name in names:
        for key in series_needed(strategies[name], universe):
            if key.kind == "bars":
                market.bars(key.symbol, key.timeframe, key.venue)
            else:
                market.funding_rates(key.symbol)


def clear_of_candle_close(needed: float) -> None:
    """A series fetched in one candle is another series in the next: when the candle
    closes within `needed` seconds, wait until it has, so no run spans a close."""
    left = candle_freshness(TIMEFRAME, time.time()).ttl
    if left < needed:
        print(f"  the {TIMEFRAME} candle closes in {left:.0f} s: waiting for it", flush=True)
        time.sleep(left + 0.5)


# -- in this process: a worker's runtime ---------------------------------------------


def fetch_counts() -> dict[str, int]:
    """oppscan_market_fetches_total of this process, by outcome."""
    labels = [{"source": "synthetic", "outcome": outcome} for outcome in OUTCOMES]
    return {
        label["outcome"]: int(REGISTRY.get_sample_value(METRIC, label) or 0) for label in labels
    }


@contextlib.contextmanager
def worker(bench: Bench, latency_ms: float, prefix: str) -> Iterator[ScanService]:
    """A worker's runtime (series cache, fetch threads, strategy pool, actors) here."""
    settings = Settings(
        redis_url=bench.redis_url,
        data_dir=bench.work / "data",
        synthetic_latency_ms=latency_ms,
        key_prefix=prefix,
        handoff_timeout=1.0,
    )
    runtime = start_runtime(settings)
    try:
        yield ScanService(runtime)
    finally:
        stop_runtime(runtime)


def scan(
    service: ScanService, user: str, names: Sequence[str], symbols: tuple[str, ...]
) -> Scanned:
    """One scan from discover to its results, and the fetches counted meanwhile."""
    before = fetch_counts()
    params = ScanParams(tuple(names), symbols, TIMEFRAME)
    started = time.monotonic()
    scan_id = service.discover(user, params, force_refresh=True).scan_id
    status, timeline = follow(service, user, scan_id, started)
    seconds = time.monotonic() - started
    after = fetch_counts()
    body = json.loads(service.results(user, scan_id).snapshot.results or b"{}")
    counted = {outcome: after[outcome] - before[outcome] for outcome in OUTCOMES}
    return Scanned(seconds, status, body["metadata"]["market"], counted, timeline)


def follow(
    service: ScanService, user: str, scan_id: str, started: float, timeout: float = 120.0
) -> tuple[str, tuple[tuple[float, int], ...]]:
    """Poll the status until terminal; the strategies done at each change."""
    deadline = started + timeout
    timeline: list[tuple[float, int]] = []
    while time.monotonic() < deadline:
        snapshot = service.status(user, scan_id).snapshot
        if not timeline or timeline[-1][1] != snapshot.completed:
            timeline.append((round(time.monotonic() - started, 3), snapshot.completed))
        if snapshot.status.terminal:
            return snapshot.status.value, tuple(timeline)
        time.sleep(POLL)
    raise TimeoutError(f"{scan_id} not finished within {timeout:g} s")


# -- the old way: every strategy fetches what it reads -------------------------------


class CountingMarket:
    """A source that counts the series asked of it."""

    def __init__(self, market: MarketData) -> None:
        self._market = market
        self._lock = threading.Lock()
        self.fetches = 0

    @property
    def name(self) -> str:
        return self._market.name

    def symbols(self) -> Sequence[str]:
        return self._market.symbols()

    def venues(self) -> Sequence[str]:
        return self._market.venues()

    def bars(self, symbol: str, timeframe: str, venue: str | None = None) -> Bars:
        self._count()
        return self._market.bars(symbol, timeframe, venue)

    def funding_rates(self, symbol: str) -> FloatArray | None:
        self._count()
        return self._market.funding_rates(symbol)

    def freshness(self, key: SeriesKey, now: float) -> Freshness:
        return self._market.freshness(key, now)

    def _count(self) -> None:
        with self._lock:
            self.fetches += 1


def old_way(names: Sequence[str], symbols: tuple[str, ...], latency_ms: float) -> OldWay:
    """The strategies on 4 threads, straight on the source (no plan, no cache)."""
    market = CountingMarket(SyntheticMarket(latency_ms=latency_ms))
    ctx = StrategyContext(market, symbols, TIMEFRAME)
    strategies = [available_strategies()[name] for name in names]
    started = time.monotonic()
    with ThreadPoolExecutor(OLD_THREADS, thread_name_prefix="old-way") as pool:
        outcomes = list(pool.map(lambda s: run_strategy(s, ctx, "old-way"), strategies))
    seconds = time.monotonic() - started
    statuses = Counter(o.status if isinstance(o, StrategyResult) else "failed" for o in outcomes)
    return OldWay(seconds, market.fetches, dict(statuses))


# -- cold, baseline, warm ------------------------------------------------------------


def cold_cases(bench: Bench) -> None:
    """Each latency with one strategy and with all 14; warm after the last full one."""
    everything = tuple(available_strategies())
    top = max(bench.args.latencies)
    for latency in bench.args.latencies:
        for names in ((ONE,), everything):
            warm_after = "warm" in bench.args.only and latency == top and names == everything
            cold_case(bench, latency, names, warm_after)


def cold_case(bench: Bench, latency: float, names: Sequence[str], warm_after: bool) -> None:
    parts = bench.args.only
    new = old = None
    if "cold" in parts or warm_after:
        prefix = bench.prefix()
        clear_of_candle_close(needed=60.0 if warm_after else 30.0)
        with worker(bench, latency, prefix) as service:
            new = scan(service, "cold", names, bench.symbols)
            if warm_after:
                warm(bench, service, latency, prefix)
    if "baseline" in parts and latency <= bench.args.baseline_max_ms:
        old = old_way(names, bench.symbols, latency)
    row = Cold(latency, len(names), bench.series(names), new, old)
    bench.cold.append(row)
    print("  " + " | ".join(cold_row(row)), flush=True)


def warm(bench: Bench, service: ScanService, latency: float, prefix: str) -> None:
    """Another user's full scan in the same worker, then a third's in another worker
    on the same Redis (its memory is empty: the copies in Redis)."""
    everything = tuple(available_strategies())
    bench.warm["same worker"] = scan(service, "warm", everything, bench.symbols)
    with worker(bench, latency, prefix) as other:
        bench.warm["another worker"] = scan(other, "warm2", everything, bench.symbols)
    for where, scanned in bench.warm.items():
        print(f"  warm, {where}: {scanned.seconds:.3f} s, {dict(scanned.market)}", flush=True)


# -- concurrent: users on gunicorn ---------------------------------------------------


def shared_cases(bench: Bench) -> None:
    for latency in bench.args.shared_latencies:
        found = shared_case(bench, latency)
        bench.shared.append(found)
        print("  " + " | ".join(shared_row(found)), flush=True)


def shared_case(bench: Bench, latency: float) -> Shared:
    prefix = bench.prefix()
    server = oppscan_server(
        f"market-{latency:g}ms",
        bench.redis_url,
        bench.work,
        bench.args.workers,
        synthetic_latency_ms=f"{latency:g}",
        key_prefix=prefix,
        handoff_timeout="1",
    )
    try:
        server.start()
        every_worker_ready(server)
        clear_of_candle_close(needed=60.0)
        scans = start_together(server.url, bench.redis_url, prefix, bench.args.users)
        metrics = scrape(server.url)
    finally:
        server.stop()
    series = bench.series(tuple(available_strategies()))
    return Shared(latency, bench.args.workers, series, scans, metrics)


def every_worker_ready(server: Gunicorn, timeout: float = 30.0) -> None:
    """Until each worker has answered `/readyz` once (a new connection each time)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < server.workers and time.monotonic() < deadline:
        reply = requests.get(f"{server.url}/readyz", headers={"Connection": "close"}, timeout=2)
        if reply.status_code == 200:
            seen.add(reply.headers.get("X-Served-By", ""))
    if len(seen) < server.workers:
        raise RuntimeError(f"only {len(seen)} of {server.workers} workers answered ready")


def start_together(url: str, redis_url: str, prefix: str, users: int) -> tuple[UserScan, ...]:
    """Each user starts a full scan at the same moment and follows it to its results."""
    barrier = threading.Barrier(users)
    store = redis.Redis.from_url(redis_url)
    try:
        with ThreadPoolExecutor(users, thread_name_prefix="user") as pool:
            futures = [
                pool.submit(one_user, url, f"user{i}", barrier, store, Keys(prefix))
                for i in range(users)
            ]
            return tuple(future.result(timeout=180) for future in futures)
    finally:
        store.close()


def one_user(
    url: str, user: str, barrier: threading.Barrier, store: redis.Redis, keys: Keys
) -> UserScan:
    with Client(url, token(user)) as api:
        barrier.wait(timeout=30)
        started = time.monotonic()
        scan = api.discover(timeframe="1h")  # every strategy, every symbol
        final = scan.wait(interval=HTTP_POLL, timeout=120)
        ended = time.monotonic()
    scan_id, status = scan.scan_id, final.status
    owner = store.hget(keys.scan(scan_id), "owner")
    market = final.body["metadata"]["market"]
    owner_name = owner.decode() if isinstance(owner, bytes) else str(owner)
    return UserScan(started, ended, status, owner_name, market)


def scrape(url: str) -> dict[str, int]:
    """oppscan_market_fetches_total over every worker, by outcome."""
    reply = requests.get(f"{url}/metrics", timeout=10)
    reply.raise_for_status()
    counts = dict.fromkeys(OUTCOMES, 0)
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            if sample.name == METRIC:
                outcome = sample.labels["outcome"]
                counts[outcome] = counts.get(outcome, 0) + int(sample.value)
    return counts


# -- targets -------------------------------------------------------------------------


def targets(bench: Bench) -> list[Target]:
    found = [fetch_target(bench.cold)] if any(r.new for r in bench.cold) else []
    found += cold_time_targets(bench.cold)
    if "same worker" in bench.warm:
        found += warm_targets(bench.warm["same worker"])
    found += [shared_target(s) for s in bench.shared]
    return found


def fetch_target(rows: Sequence[Cold]) -> Target:
    measured = [
        f"{r.latency_ms:g} ms x {r.strategies}:"
        f" {r.new.market['fetched']}/{r.new.counted['fetched']} of {r.series}"
        for r in rows
        if r.new is not None
    ]
    passed = all(
        r.new.status == "complete"
        and r.new.market["fetched"]
        == r.new.counted["fetched"]
        == r.series
        == r.new.market["series"]
        for r in rows
        if r.new is not None
    )
    return Target(
        "fetches per cold scan (results/counter) == distinct series, scan complete",
        "; ".join(measured),
        "== series, any number of strategies",
        passed,
    )


def cold_time_targets(rows: Sequence[Cold]) -> list[Target]:
    full = max((r.strategies for r in rows), default=0)
    return [
        Target(
            "full scan at 1 s per fetch, cold",
            f"{r.new.seconds:.2f} s, {r.new.status}",
            f"< {COLD_LIMIT:g} s, complete",
            r.new.seconds < COLD_LIMIT and r.new.status == "complete",
        )
        for r in rows
        if r.new is not None and r.latency_ms == 1000.0 and r.strategies == full
    ]


def warm_targets(scanned: Scanned) -> list[Target]:
    market = scanned.market
    return [
        Target(
            "warm full scan, another user, same candle",
            f"{scanned.seconds:.3f} s, {scanned.status}",
            f"< {WARM_LIMIT:g} s, complete",
            scanned.seconds < WARM_LIMIT and scanned.status == "complete",
        ),
        Target(
            "warm full scan: series fetched (results/counter)",
            f"{market['fetched']}/{scanned.counted['fetched']}, cached {market['cached']}"
            f" of {market['series']}",
            "0, all cached",
            market["fetched"] == scanned.counted["fetched"] == 0
            and market["cached"] == market["series"],
        ),
    ]


def shared_target(found: Shared) -> Target:
    fetched, metrics = found.total("fetched"), found.metrics["fetched"]
    return Target(
        f"{len(found.scans)} users at once, {found.workers} workers, {found.latency_ms:g} ms:"
        " fetches in total (results/metrics)",
        f"{fetched}/{metrics} of {found.series}",
        "== series of one scan, every scan complete",
        fetched == metrics == found.series and all(s.status == "complete" for s in found.scans),
    )


# -- printing ------------------------------------------------------------------------

COLD_HEADERS = (
    "per fetch",
    "strategies",
    "series",
    "scan, cold",
    "fetched (results/counter)",
    "old way",
    "old way fetches",
    "time ratio",
    "fetch ratio",
)
SHARED_HEADERS = (
    "per fetch",
    "users x workers",
    "all complete after",
    "fetched (results/metrics)",
    "shared",
    "cached",
    "scans per worker",
)


def seconds_text(value: float) -> str:
    return f"{value:.2f} s" if value >= 1 else f"{value * 1000:.0f} ms"


def ratio_text(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2f}"


def cold_row(row: Cold) -> tuple[str, ...]:
    new, old = row.new, row.old
    scanned = ("-", "-")
    if new is not None:
        scanned = (seconds_text(new.seconds), f"{new.market['fetched']}/{new.counted['fetched']}")
    ratios = ("-", "-")
    if new is not None and old is not None:
        ratios = (
            ratio_text(old.seconds / new.seconds),
            ratio_text(old.fetches / new.market["fetched"]),
        )
    return (
        f"{row.latency_ms:g} ms",
        str(row.strategies),
        str(row.series),
        *scanned,
        seconds_text(old.seconds) if old else "not run",
        str(old.fetches) if old else "-",
        *ratios,
    )


def shared_row(found: Shared) -> tuple[str, ...]:
    owners = Counter(s.owner for s in found.scans)
    return (
        f"{found.latency_ms:g} ms",
        f"{len(found.scans)} x {found.workers}",
        seconds_text(found.seconds),
        f"{found.total('fetched')}/{found.metrics['fetched']} of {found.series}",
        str(found.total("shared")),
        str(found.total("cached")),
        " ".join(str(n) for n in sorted(owners.values(), reverse=True)),
    )


def render(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    table = [tuple(headers), *(tuple(r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in table]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def where_time_goes(rows: Sequence[Cold]) -> list[str]:
    """When the strategies of each cold full scan finished: they start as their series land."""
    full = max((r.strategies for r in rows), default=0)
    lines = []
    for row in rows:
        if row.new is not None and row.strategies == full and row.latency_ms > 0:
            steps = ", ".join(f"{done} at {at:.2f} s" for at, done in row.new.timeline if done)
            lines.append(f"  {row.latency_ms:g} ms per fetch: strategies done {steps}")
    return lines


def report(bench: Bench) -> list[Target]:
    print()
    if bench.cold:
        print(f"cold scans, one worker in this process ({len(bench.symbols)} symbols, {TIMEFRAME})")
        print(render(COLD_HEADERS, [cold_row(r) for r in bench.cold]))
        for line in where_time_goes(bench.cold):
            print(line)
    for where, scanned in bench.warm.items():
        market = dict(scanned.market)
        print(f"warm full scan, another user, {where}: {scanned.seconds:.3f} s, {market}")
    if bench.shared:
        print("\nconcurrent full scans on gunicorn, each user its own")
        print(render(SHARED_HEADERS, [shared_row(s) for s in bench.shared]))
    found = targets(bench)
    print("\ntargets")
    for target in found:
        print(f"  {target.verdict} {target.name}: {target.measured} (target {target.target})")
    return found


def write_json(bench: Bench, found: Sequence[Target], busy_before: float) -> Path:
    path: Path = bench.args.out / "market.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "settings": {k: str(v) for k, v in vars(bench.args).items()},
        "cpu_busy_before": round(busy_before, 3),
        "loadavg_after": os.getloadavg(),
        "cold": [asdict(r) for r in bench.cold],
        "warm": {where: asdict(s) for where, s in bench.warm.items()},
        "concurrent": [{**asdict(s), "seconds": round(s.seconds, 3)} for s in bench.shared],
        "targets": [{**asdict(t), "result": t.verdict} for t in found],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


# -- the run -------------------------------------------------------------------------


def run(bench: Bench) -> None:
    parts = bench.args.only
    if {"cold", "baseline", "warm"} & set(parts):
        print("cold scans, and the old way beside them ...", flush=True)
        cold_cases(bench)
    if "concurrent" in parts:
        print("concurrent scans on gunicorn ...", flush=True)
        shared_cases(bench)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logs("warning")  # oppscan's events as JSON lines on stderr, warnings only
    busy_before = settle(args.settle)
    symbols = tuple(SyntheticMarket().symbols())
    generate_once(tuple(available_strategies()), symbols)
    with (
        tempfile.TemporaryDirectory(prefix="oppscan-market-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        stack.callback(keep_logs, work, args.out / "logs")
        server = EmbeddedRedis(work / "redis", port=free_port()).start()
        stack.callback(server.stop)
        stack.callback(pykka.ActorRegistry.stop_all)
        bench = Bench(args, server.url, work, symbols)
        run(bench)
    found = report(bench)
    print(
        f"\nother work: CPU {busy_before:.0%} busy before the run; load average {os.getloadavg()}"
    )
    print(f"written: {write_json(bench, found, busy_before)}")
    return 0 if all(t.passed for t in found) else 1


if __name__ == "__main__":
    sys.exit(main())
