"""CPU accounting of oppscan workers (see gunicorn_profiled.py), per request."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from servers import HERE, Gunicorn, gunicorn_argv, oppscan_server

REQUEST = "ThreadWorker.handle_request"


@dataclass(frozen=True)
class Probe:
    """One probed function, over every worker: CPU per request, CPU and wall time per call."""

    name: str
    calls: int
    cpu_us_per_request: float
    cpu_us_per_call: float
    wall_us_per_call: float


def profiled_server(
    name: str, redis_url: str, directory: Path, workers: int, **extra: str
) -> Gunicorn:
    """`oppscan_server` with probed workers; their figures land in `directory/name-profile`."""
    server = oppscan_server(name, redis_url, directory, workers, **extra)
    out = directory / f"{name}-profile"
    out.mkdir(parents=True, exist_ok=True)
    server.argv = gunicorn_argv("-c", "python:gunicorn_profiled")
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    server.env |= {"PYTHONPATH": path, "BENCH_PROFILE_DIR": str(out)}
    return server


def profile_dir(server: Gunicorn) -> Path:
    return Path(server.env["BENCH_PROFILE_DIR"])


def probes(directory: Path) -> list[Probe]:
    """Every probe that ran, summed over the workers' files, per request handled."""
    totals: dict[str, list[float]] = {}
    for path in sorted(directory.glob("*.json")):
        for name, row in json.loads(path.read_text()).items():
            acc = totals.setdefault(name, [0.0, 0.0, 0.0])
            acc[0] += row["calls"]
            acc[1] += row["cpu"]
            acc[2] += row["wall"]
    requests = totals.get(REQUEST, [0.0])[0] or 1.0
    return [
        Probe(name, int(n), cpu / requests * 1e6, cpu / n * 1e6, wall / n * 1e6)
        for name, (n, cpu, wall) in totals.items()
        if n
    ]


def render(found: Sequence[Probe]) -> str:
    lines = ["    calls   cpu us/req  cpu us/call  wall us/call  function"]
    lines += [
        f"  {p.calls:7d}  {p.cpu_us_per_request:11.1f}  {p.cpu_us_per_call:11.1f}"
        f"  {p.wall_us_per_call:12.1f}  {p.name}"
        for p in found
    ]
    return "\n".join(lines)
