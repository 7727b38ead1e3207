"""What oppscan's request pipeline costs on top of Falcon, in process, no network.

    python benchmarks/bench_pipeline.py [--requests 20000] [--profile status_304] [--access-log]

Calls the WSGI apps directly, each request a copy of one prepared environ: the
hello app (Falcon, a constant JSON document) and oppscan's own app on a real
Redis (the embedded one), reading a finished scan this worker has cached.
Prints microseconds per request for each, their ratio to hello, and, with
`--profile`, where one kind of request spends them (cProfile, by own time).
The access log is off unless `--access-log` (its lines then go to stderr:
redirect it).
gunicorn, sockets and the kernel are left out: this isolates what the app
adds, which `bench_service.py` measures whole.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from falcon import testing

HERE = Path(__file__).resolve().parent
SECRET = "bench-pipeline-secret"
App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per kind")
    parser.add_argument("--reps", type=int, default=3, help="alternating runs per kind")
    parser.add_argument("--profile", help="the kind of request to profile (e.g. status_304)")
    parser.add_argument("--access-log", action="store_true", help="with the access log on")
    return parser.parse_args()


def call(app: App, environ: Mapping[str, Any]) -> tuple[str, bytes]:
    status: list[str] = []

    def start_response(code: str, headers: Any, exc_info: Any = None) -> None:
        status.append(code)

    body = b"".join(app(dict(environ), start_response))
    return status[0], body


def per_request_us(app: App, environ: Mapping[str, Any], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        call(app, environ)
    return (time.perf_counter() - started) / n * 1e6


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="oppscan-pipeline-"))
    metrics = work / "metrics"
    metrics.mkdir()
    # As under gunicorn: prometheus_client picks its multiprocess mode on import.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    sys.path.insert(0, str(HERE))
    from oppscan.auth import issue_token
    from oppscan.storage import EmbeddedRedis

    redis = EmbeddedRedis(work / "redis").start()
    os.environ |= {
        "OPPSCAN_REDIS_URL": redis.url,
        "OPPSCAN_SECRET": SECRET,
        "OPPSCAN_DATA_DIR": str(work / "data"),
        "OPPSCAN_METRICS_DIR": str(metrics),
        "OPPSCAN_LOG_LEVEL": "info" if args.access_log else "warning",
        "OPPSCAN_ACCESS_LOG": "1" if args.access_log else "0",
    }
    from hello_app import app as hello

    from oppscan.http.app import get_app, shutdown

    try:
        app = get_app()
        token = issue_token(SECRET, "bench")
        kinds = prepare(app, token)
        kinds["hello"] = testing.create_environ(path="/hello")
        report(app, hello, kinds, args)
    finally:
        shutdown()
        redis.stop()
    return 0


def prepare(app: App, token: str) -> dict[str, dict[str, Any]]:
    """A finished scan, read once (so that it is cached), and the environs to read it."""
    auth = {"Authorization": f"Bearer {token}"}
    body = json.dumps({"strategies": ["momentum"], "symbols": ["BTC-USD"]})
    discover = testing.create_environ(
        path="/api/v1/opportunities/discover",
        method="POST",
        headers={**auth, "Content-Type": "application/json"},
        body=body,
    )
    _, started = call(app, discover)
    scan_id = json.loads(started)["scan_id"]
    status = testing.create_environ(path=f"/api/v1/opportunities/status/{scan_id}", headers=auth)
    deadline = time.monotonic() + 30
    while json.loads(call(app, status)[1])["status"] != "complete":
        if time.monotonic() > deadline:
            raise RuntimeError("the scan did not complete within 30 s")
        time.sleep(0.05)
    results = testing.create_environ(path=f"/api/v1/opportunities/results/{scan_id}", headers=auth)
    call(app, results)  # cached with its results document from now on
    etag = status_etag(app, status)
    conditional = testing.create_environ(
        path=f"/api/v1/opportunities/status/{scan_id}", headers={**auth, "If-None-Match": etag}
    )
    code, _ = call(app, conditional)
    if not code.startswith("304"):
        raise RuntimeError(f"a conditional status answered {code}, not 304")
    return {"status": status, "status_304": conditional, "results": results}


def status_etag(app: App, environ: Mapping[str, Any]) -> str:
    headers: list[tuple[str, str]] = []

    def start_response(code: str, sent: list[tuple[str, str]], exc_info: Any = None) -> None:
        headers.extend(sent)

    b"".join(app(dict(environ), start_response))
    return next(value for name, value in headers if name.lower() == "etag")


def report(
    app: App, hello: App, kinds: Mapping[str, dict[str, Any]], args: argparse.Namespace
) -> None:
    for environ in kinds.values():  # warm every path
        per_request_us(hello if environ is kinds["hello"] else app, environ, 500)
    timings: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(args.reps):
        for name, environ in kinds.items():
            served = hello if name == "hello" else app
            timings[name].append(per_request_us(served, environ, args.requests))
    base = min(timings["hello"])
    print(f"{'request':<12} {'us/request':>11} {'hello/it':>9}")
    for name, runs in timings.items():
        best = min(runs)
        print(f"{name:<12} {best:11.1f} {base / best:9.2f}")
    if args.profile:
        profile(app, kinds[args.profile], args.requests)


def profile(app: App, environ: Mapping[str, Any], n: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        call(app, environ)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
    print(out.getvalue())


if __name__ == "__main__":
    raise SystemExit(main())
