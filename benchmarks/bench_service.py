"""oppscan under gunicorn against a hello-world Falcon app, both started in this run.

    python benchmarks/bench_service.py [--seconds 3] [--reps 3] [--client auto] [--profile]
                                       [--only STEP...] [--access-log]

Starts a redis-server and four gunicorn masters on free loopback ports: the
measured oppscan (2 workers x 4 threads), a 1-worker oppscan whose market is
slow (it owns a scan that runs for minutes), and the hello app with 2 and with 1
worker. Prints a table of figures with their same-run baselines and ratios, and
writes it as JSON to benchmarks/out/results.json. Takes about two minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import commands
import profiling
import redis
from loadgen import Load, LoadGenerator, PythonClient, pick
from report import Figure, table, write_json
from scans import BusyScans, BusySpec, client, results_path, start_scan, status_path, wait
from servers import Gunicorn, hello_server, oppscan_server, token

from oppscan.processes import free_port
from oppscan.storage import EmbeddedRedis, Keys

OUT = Path(__file__).resolve().parent / "out"
HELLO = "/hello"
USER = "bench"
STEPS = ("store", "actor", "cache", "busy", "profile", "scan")
SLOW = {"synthetic_latency_ms": "2000", "handoff_timeout": "1"}  # a scan runs for minutes

# A server, the URL to load on it and, for conditional reads, the entity tag sent back.
Target = tuple[Gunicorn, str] | tuple[Gunicorn, str, str]


@dataclass
class Servers:
    owner: Gunicorn  # oppscan, 1 worker, slow market: owns the long scan
    main: Gunicorn  # oppscan, 2 workers: the measured server
    hello2: Gunicorn
    hello1: Gunicorn


@dataclass(frozen=True)
class Run:
    """One load run and the CPU its server's workers used meanwhile."""

    load: Load
    cpu_seconds: float

    @property
    def cpu_us(self) -> float:
        """Worker CPU per request, in microseconds."""
        return self.cpu_seconds / self.load.requests * 1e6 if self.load.requests else 0.0

    def summary(self) -> dict[str, object]:
        return {**self.load.summary(), "cpu_us_per_request": round(self.cpu_us, 1)}


@dataclass
class Bench:
    args: argparse.Namespace
    load: LoadGenerator
    store: redis.Redis
    redis_url: str
    work: Path
    token: str = field(default_factory=lambda: token(USER))
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure, **detail: Any) -> None:
        self.figures.append(figure)
        self.details[figure.key] = detail
        print("  " + " | ".join(figure.row()), flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one load run")
    parser.add_argument("--reps", type=int, default=3, help="alternating runs per figure")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--busy", type=int, default=8, help="CPU-bound scans kept running")
    parser.add_argument("--scans", type=int, default=10, help="sequential full scans timed")
    parser.add_argument("--profile", action="store_true", help="CPU accounting of 1, 2 and 5")
    parser.add_argument("--settle", type=float, default=60.0, help="wait for a quiet machine")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", nargs="+", choices=STEPS, help="steps to run (default: all)")
    parser.add_argument(
        "--access-log", action="store_true", help="the measured server logs every request"
    )
    args = parser.parse_args(argv)
    if args.only is None:
        args.only = [s for s in STEPS if s != "profile" or args.profile]
    return args


# -- measuring -----------------------------------------------------------------------


def measure(bench: Bench, target: Target, seconds: float) -> Run:
    server, url = target[0], target[1]
    etag = target[2] if len(target) == 3 else None
    auth = None if url.endswith(HELLO) else bench.token
    before = server.cpu_seconds()
    load = bench.load.run(url, auth, seconds, etag)
    return Run(load, server.cpu_seconds() - before)


def compare(bench: Bench, targets: Mapping[str, Target]) -> dict[str, list[Run]]:
    """Each target once per repetition, in an order that rotates."""
    runs: dict[str, list[Run]] = {name: [] for name in targets}
    names = list(targets)
    for rep in range(bench.args.reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(measure(bench, targets[name], bench.args.seconds))
    return runs


def warm(bench: Bench, targets: Sequence[Target]) -> None:
    for target in targets:
        measure(bench, target, 1.0)


def rps(runs: Sequence[Run]) -> float:
    return sum(r.load.requests for r in runs) / sum(r.load.seconds for r in runs)


def cpu_us(runs: Sequence[Run]) -> float:
    requests = sum(r.load.requests for r in runs)
    return sum(r.cpu_seconds for r in runs) / requests * 1e6 if requests else 0.0


def paired_ratio(runs: Sequence[Run], base: Sequence[Run]) -> float:
    """Median over repetitions of oppscan / hello, each pair measured back to back."""
    return statistics.median(a.load.rps / b.load.rps for a, b in zip(runs, base, strict=True))


def mix(runs: Sequence[Run], kind: str) -> dict[str, int]:
    total: dict[str, int] = {}
    for run in runs:
        for key, n in run.load.counts(kind).items():
            total[key] = total.get(key, 0) + n
    return total


def run_detail(runs: Sequence[Run], base: Sequence[Run]) -> dict[str, Any]:
    return {
        "source": mix(runs, "source"),
        "worker": mix(runs, "worker"),
        "bytes": mix(runs, "bytes"),
        "cpu_us_per_request": round(cpu_us(runs), 1),
        "hello_cpu_us_per_request": round(cpu_us(base), 1),
        "runs": [r.summary() for r in runs],
        "hello_runs": [r.summary() for r in base],
    }


def throughput(
    key: str, name: str, runs: Sequence[Run], base: Sequence[Run], target: float, base_name: str
) -> Figure:
    ratio = paired_ratio(runs, base)
    return Figure(
        key=key,
        name=name,
        value=rps(runs),
        unit="req/s",
        baseline=rps(base),
        baseline_name=base_name,
        ratio=ratio,
        target=f">= {target:.2f}x",
        passed=ratio >= target,
    )


def commands_figure(
    key: str, name: str, per_request: float, idle: commands.Window, target: str, passed: bool
) -> Figure:
    return Figure(
        key=key,
        name=name,
        value=per_request,
        unit="cmd/req",
        baseline=idle.rate,
        baseline_name="no requests",
        ratio=None,
        target=target,
        passed=passed,
        baseline_unit="cmd/s",
    )


def command_detail(idle: commands.Window, window: commands.Window, requests: int) -> dict[str, Any]:
    return {
        "idle_calls": dict(idle.calls),
        "idle_seconds": round(idle.seconds, 3),
        "window_calls": dict(window.calls),
        "window_seconds": round(window.seconds, 3),
        "requests": requests,
    }


# -- figures ---------------------------------------------------------------------------


def store_path(bench: Bench, servers: Servers, scan_id: str) -> None:
    """1 and 4: status of a running scan that a worker of another server owns."""
    main = (servers.main, servers.main.url + status_path(scan_id))
    warm(bench, [main])
    idle = commands.idle_window(bench.store, bench.args.seconds)
    meter = commands.Meter(bench.store)
    runs = compare(bench, {"oppscan": main, "hello": (servers.hello2, servers.hello2.url + HELLO)})
    window = meter.stop()
    requests = sum(r.load.requests for r in runs["oppscan"])
    per_request = window.per_request(requests, idle)
    owner = bench.store.hget(Keys().scan(scan_id), "owner")
    bench.add(
        throughput("1", "status, store path", runs["oppscan"], runs["hello"], 0.60, "hello"),
        owner=owner.decode() if isinstance(owner, bytes) else owner,
        **run_detail(runs["oppscan"], runs["hello"]),
    )
    bench.add(
        commands_figure(
            "4",
            "Redis commands per status, store path",
            per_request,
            idle,
            "<= 1 (+0.02)",
            per_request <= 1.02,
        ),
        **command_detail(idle, window, requests),
    )


def actor_path(bench: Bench, servers: Servers, scan_id: str) -> None:
    """2: status answered by the owner's actor (1-worker servers on both sides)."""
    owner = (servers.owner, servers.owner.url + status_path(scan_id))
    warm(bench, [owner])
    runs = compare(bench, {"oppscan": owner, "hello": (servers.hello1, servers.hello1.url + HELLO)})
    bench.add(
        throughput(
            "2", "status, actor path", runs["oppscan"], runs["hello"], 0.75, "hello 1 worker"
        ),
        **run_detail(runs["oppscan"], runs["hello"]),
    )


def cache_path(bench: Bench, servers: Servers) -> None:
    """3: status and results of a finished scan, and the Redis commands they cost."""
    api = client(servers.main.url, bench.token)
    symbols = api.symbols()[1:]  # not the long scan's parameters, which it would join
    scan_id = start_scan(api, symbols=symbols, force_refresh=True)
    wait(api, scan_id)
    etag = api.request("GET", status_path(scan_id)).etag
    size = len(api.request("GET", results_path(scan_id)).content)
    main = servers.main
    targets: dict[str, Target] = {
        "status": (main, main.url + status_path(scan_id)),
        "results": (main, main.url + results_path(scan_id)),
        "status_304": (main, main.url + status_path(scan_id), etag or ""),
        "hello": (servers.hello2, servers.hello2.url + HELLO),
        "hello_sized": (servers.hello2, servers.hello2.url + f"/bytes/{size}"),
    }
    warm(bench, [targets["status"], targets["results"]])
    idle = commands.idle_window(bench.store, bench.args.seconds)
    meter = commands.Meter(bench.store)
    runs = compare(bench, targets)
    window = meter.stop()
    conditional = {s for r in runs["status_304"] for s in r.load.counts("status")}
    if conditional != {"304"}:  # else 3d would time whole answers, not 304s
        raise RuntimeError(f"conditional reads were answered {sorted(conditional)}, not 304")
    requests = sum(r.load.requests for r in runs["status"] + runs["results"] + runs["status_304"])
    per_request = window.per_request(requests, idle)
    bench.add(
        throughput("3a", "status, finished scan", runs["status"], runs["hello"], 0.90, "hello"),
        **run_detail(runs["status"], runs["hello"]),
    )
    bench.add(
        throughput(
            "3b",
            "results, finished scan",
            runs["results"],
            runs["hello_sized"],
            0.90,
            f"hello, {size} B body",
        ),
        **run_detail(runs["results"], runs["hello_sized"]),
    )
    bench.add(
        throughput(
            "3d",
            "status 304 (If-None-Match), finished scan",
            runs["status_304"],
            runs["hello"],
            0.95,
            "hello",
        ),
        **run_detail(runs["status_304"], runs["hello"]),
    )
    bench.add(
        commands_figure(
            "3c",
            "Redis commands per read, finished scan",
            per_request,
            idle,
            "0 (+0.02)",
            per_request <= 0.02,
        ),
        **command_detail(idle, window, requests),
    )


def busy_latency(bench: Bench, servers: Servers, scan_id: str) -> None:
    """5: status p99 while CPU-bound scans run, against its p99 with none running:
    strategies on threads (the default), then in child processes (5b)."""
    busy_figure(bench, servers.main, servers.hello2, scan_id, "5", "strategy threads")
    spawning = oppscan_server("procs", bench.redis_url, bench.work, 2, strategy_processes="2")
    spawning.connections = bench.args.connections
    spawning.start()
    try:
        busy_figure(bench, spawning, servers.hello2, scan_id, "5b", "2 strategy processes")
    finally:
        spawning.stop()


def busy_figure(
    bench: Bench, server: Gunicorn, baseline: Gunicorn, scan_id: str, key: str, how: str
) -> None:
    poller = PythonClient(connections=4, interval=0.02)
    url = server.url + status_path(scan_id)
    seconds = 2 * bench.args.seconds
    idle = poller.run(url, bench.token, seconds)
    hello = poller.run(baseline.url + HELLO, None, seconds)
    symbols = tuple(client(server.url, bench.token).symbols())
    spec = BusySpec(server.url, bench.redis_url, symbols, bench.args.busy, token)
    busy = BusyScans(spec).start()
    busy.sample(True)
    loaded = poller.run(url, bench.token, seconds)
    busy.sample(False)
    stats = busy.stop()
    ratio = loaded.p99_ms / idle.p99_ms
    bench.add(
        Figure(
            key=key,
            name=f"status p99, {bench.args.busy} CPU-bound scans, {how}",
            value=loaded.p99_ms,
            unit="ms",
            baseline=idle.p99_ms,
            baseline_name="no scans",
            ratio=ratio,
            target="<= 3.00x",
            passed=ratio <= 3.0,
        ),
        idle=idle.summary(),
        loaded=loaded.summary(),
        hello_idle=hello.summary(),
        busy=stats.summary(),
    )


def scan_time(bench: Bench, stack: ExitStack) -> None:
    """6: full scans, one after another, on a 1-worker server of their own."""
    single = oppscan_server("single", bench.redis_url, bench.work, 1, key_prefix="bench6:")
    stack.callback(single.stop)
    single.start()
    api = client(single.url, bench.token)
    durations: list[float] = []
    began = time.monotonic()
    for _ in range(bench.args.scans):
        scan_id = start_scan(api, force_refresh=True)
        started = time.monotonic()
        if wait(api, scan_id, poll=0.02) != "complete":
            raise RuntimeError(f"scan {scan_id} did not complete")
        durations.append(time.monotonic() - started)
    wall = time.monotonic() - began
    single.stop()
    add_scan_figures(bench, durations, wall)


def scan_figure(key: str, name: str, seconds: float) -> Figure:
    return Figure(key, name, seconds, "s", None, "", None, "< 2 s", seconds < 2.0)


def add_scan_figures(bench: Bench, durations: Sequence[float], wall: float) -> None:
    cold, rest = durations[0], max(durations[1:], default=durations[0])
    bench.add(
        scan_figure("6a", "full scan, first in worker", cold),
        durations=[round(d, 3) for d in durations],
        median=round(statistics.median(durations), 3),
    )
    bench.add(scan_figure("6b", "full scan, slowest of the rest", rest))
    per_second = Figure(
        key="6c",
        name="sequential full scans per worker",
        value=len(durations) / wall,
        unit="scan/s",
        baseline=None,
        baseline_name="",
        ratio=None,
        target="-",
        passed=None,
    )
    bench.add(per_second, wall_seconds=round(wall, 3), scans=len(durations))


# -- CPU accounting ------------------------------------------------------------------


def profile_run(
    bench: Bench, server: Gunicorn, label: str, drive: Callable[[Gunicorn], Load]
) -> None:
    """Start a probed server, let `drive` load it, stop it, and print where its CPU went."""
    server.connections = bench.args.connections
    server.start()
    try:
        before = server.cpu_seconds()
        load = drive(server)
        cpu = server.cpu_seconds() - before
    finally:
        server.stop()
    found = profiling.probes(profiling.profile_dir(server))
    handled = next((p.calls for p in found if p.name == profiling.REQUEST), 0)
    per_request = cpu / handled * 1e6 if handled else 0.0
    print(f"  {label}: {load.rps:.0f} req/s measured, {handled} requests handled,")
    print(f"  worker CPU {cpu:.2f} s = {per_request:.0f} us per request handled")
    print(profiling.render(found))
    bench.details.setdefault("profiles", {})[label] = {
        "load": load.summary(),
        "worker_cpu_seconds": round(cpu, 2),
        "requests_handled": handled,
        "worker_cpu_us_per_request": round(per_request, 1),
        "probes": [asdict(p) for p in found],
    }


def profile_store(bench: Bench, scan_id: str) -> None:
    def drive(server: Gunicorn) -> Load:
        return bench.load.run(server.url + status_path(scan_id), bench.token, bench.args.seconds)

    server = profiling.profiled_server("prof-store", bench.redis_url, bench.work, 2)
    profile_run(bench, server, "1 status, store path", drive)


def profile_actor(bench: Bench) -> None:
    def drive(server: Gunicorn) -> Load:
        url = server.url + status_path(
            start_scan(client(server.url, bench.token), force_refresh=True)
        )
        return bench.load.run(url, bench.token, bench.args.seconds)

    server = profiling.profiled_server(
        "prof-actor", bench.redis_url, bench.work, 1, key_prefix="benchprof:", **SLOW
    )
    profile_run(bench, server, "2 status, actor path", drive)


def profile_busy(bench: Bench, scan_id: str) -> None:
    def drive(server: Gunicorn) -> Load:
        symbols = tuple(client(server.url, bench.token).symbols())
        spec = BusySpec(server.url, bench.redis_url, symbols, bench.args.busy, token)
        busy = BusyScans(spec).start()
        url = server.url + status_path(scan_id)
        load = PythonClient(connections=4, interval=0.02).run(url, bench.token, bench.args.seconds)
        busy.stop()
        return load

    server = profiling.profiled_server("prof-busy", bench.redis_url, bench.work, 2)
    profile_run(bench, server, "5 status with CPU-bound scans", drive)


def profiles(bench: Bench, scan_id: str) -> None:
    """Extra runs on probed servers; no figure counts them."""
    profile_store(bench, scan_id)
    profile_actor(bench)
    profile_busy(bench, scan_id)


# -- the run ---------------------------------------------------------------------------


def start_servers(
    stack: ExitStack, redis_url: str, work: Path, args: argparse.Namespace
) -> Servers:
    started: list[Gunicorn] = []
    logged = {"access_log": "1"} if args.access_log else {}
    for server in (
        oppscan_server("owner", redis_url, work, 1, **SLOW),
        oppscan_server("main", redis_url, work, 2, **logged),
        hello_server("hello2", work, 2),
        hello_server("hello1", work, 1),
    ):
        server.connections = args.connections
        stack.callback(server.stop)
        started.append(server.start())
    return Servers(*started)


def long_scan(bench: Bench, servers: Servers) -> str:
    """A scan of every strategy and symbol on the slow server: it runs for minutes."""
    scan_id = start_scan(client(servers.owner.url, bench.token), force_refresh=True)
    if client(servers.main.url, bench.token).scan(scan_id).status().status != "scanning":
        raise RuntimeError("the long scan is not running")
    return scan_id


def stop_all(servers: Servers) -> None:
    """The measured server first, so nobody claims the long scan the owner releases."""
    for server in (servers.main, servers.hello2, servers.hello1, servers.owner):
        server.stop()


def run(bench: Bench, stack: ExitStack) -> None:
    servers = start_servers(stack, bench.redis_url, bench.work, bench.args)
    scan_id = long_scan(bench, servers)

    def alone() -> None:
        stop_all(servers)
        scan_time(bench, stack)

    steps: dict[str, Callable[[], None]] = {
        "store": lambda: store_path(bench, servers, scan_id),
        "actor": lambda: actor_path(bench, servers, scan_id),
        "cache": lambda: cache_path(bench, servers),
        "busy": lambda: busy_latency(bench, servers, scan_id),
        "profile": lambda: profiles(bench, scan_id),
        "scan": alone,
    }
    for name, step in steps.items():
        if name in bench.args.only:
            print(f"{name} ...", flush=True)
            step()


def keep_logs(work: Path, into: Path) -> None:
    """The servers' logs, kept after the run's temporary folder goes."""
    into.mkdir(parents=True, exist_ok=True)
    for log in work.glob("*.log"):
        shutil.copyfile(log, into / log.name)


def cpu_table(figures: Sequence[Figure], details: Mapping[str, Any]) -> str:
    lines = ["worker CPU per request (us): figure | oppscan | hello | hello/oppscan"]
    for figure in figures:
        detail = details.get(figure.key, {})
        if "cpu_us_per_request" in detail:
            opp, hello = detail["cpu_us_per_request"], detail["hello_cpu_us_per_request"]
            ratio = hello / opp if opp else 0.0
            lines.append(f"  {figure.key} {figure.name} | {opp:.0f} | {hello:.0f} | {ratio:.2f}")
    return "\n".join(lines)


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over `seconds` (other programs: nothing of ours runs yet)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        return sum(fields) - idle, sum(fields)

    busy0, all0 = sample()
    time.sleep(seconds)
    busy1, all1 = sample()
    return (busy1 - busy0) / max(1, all1 - all0)


def settle(limit: float, threshold: float = 0.3) -> float:
    """Wait up to `limit` seconds for the machine to be mostly idle; the last busy share."""
    deadline = time.monotonic() + limit
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        print(f"machine {busy:.0%} busy with other work; waiting", flush=True)
        busy = cpu_busy(5.0)
    return busy


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load = pick(args.client, args.connections)
    print(f"client: {load.name}, {args.connections} connections, {args.seconds:g} s per run")
    busy_before = settle(args.settle)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="oppscan-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        stack.callback(keep_logs, work, args.out / "logs")
        server = EmbeddedRedis(work / "redis", port=free_port()).start()
        stack.callback(server.stop)
        store = redis.Redis.from_url(server.url)
        stack.callback(store.close)
        bench = Bench(args, load, store, server.url, work)
        run(bench, stack)
    print()
    print(table(bench.figures))
    print()
    print(cpu_table(bench.figures, bench.details))
    loadavg = {"before": load_before, "after": os.getloadavg(), "cpu_busy_before": busy_before}
    print(
        f"\nother work: CPU {busy_before:.0%} busy before the run; load average (1, 5, 15 min)"
        f" before {load_before}, after {loadavg['after']}"
    )
    settings = {**{k: str(v) for k, v in vars(args).items()}, "client": load.name}
    write_json(args.out / "results.json", bench.figures, bench.details, {**settings, **loadavg})
    print(f"written: {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
