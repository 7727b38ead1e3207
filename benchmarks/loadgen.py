"""Load generators: `wrk` when it is installed, else Python threads on keep-alive connections.

Both tally every response by status, `X-Scan-Source`, `X-Served-By` and body
size, so a figure can say which path answered and which workers served it.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import numpy as np

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_tally.lua"


@dataclass(frozen=True)
class Load:
    """What one load run measured."""

    client: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    tally: Mapping[str, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def counts(self, kind: str) -> dict[str, int]:
        """Tally of one kind: `status`, `source`, `worker` or `bytes`."""
        prefix = kind + "="
        return {k.removeprefix(prefix): v for k, v in self.tally.items() if k.startswith(prefix)}

    def summary(self) -> dict[str, object]:
        return {
            "client": self.client,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "errors": self.errors,
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "status": self.counts("status"),
            "source": self.counts("source"),
            "worker": self.counts("worker"),
            "bytes": self.counts("bytes"),
        }


class LoadGenerator(Protocol):
    @property
    def name(self) -> str: ...

    def run(
        self,
        url: str,
        token: str | None,
        seconds: float,
        if_none_match: str | None = None,
    ) -> Load: ...


def pick(choice: str, connections: int) -> LoadGenerator:
    """`wrk` if asked or found (for `auto`), else the Python client."""
    if choice == "wrk" or (choice == "auto" and shutil.which("wrk")):
        return Wrk(connections)
    return PythonClient(connections)


@dataclass(frozen=True)
class Wrk:
    """wrk with one thread (the machine has two cores) and `connections` keep-alive sockets."""

    connections: int
    name: str = "wrk"

    def run(
        self,
        url: str,
        token: str | None,
        seconds: float,
        if_none_match: str | None = None,
    ) -> Load:
        argv = [
            "wrk",
            "--threads=1",
            f"--connections={self.connections}",
            f"--duration={max(1, round(seconds))}s",
            "--timeout=5s",
            "--latency",
            f"--script={WRK_SCRIPT}",
            url,
        ]
        env = {**os.environ, "WRK_TOKEN": token or "", "WRK_IF_NONE_MATCH": if_none_match or ""}
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=seconds + 30, check=True
        )
        return _parse_wrk(done.stdout)


def _parse_wrk(stdout: str) -> Load:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("RESULT "))
    data = json.loads(line.removeprefix("RESULT "))
    return Load(
        client="wrk",
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        errors=int(data["socket_errors"]) + int(data["http_errors"]),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        tally=dict(data["tally"]),
    )


@dataclass(frozen=True)
class PythonClient:
    """Threads, each with one `http.client` keep-alive connection; `interval` paces them."""

    connections: int
    interval: float = 0.0
    name: str = "python"

    def run(
        self,
        url: str,
        token: str | None,
        seconds: float,
        if_none_match: str | None = None,
    ) -> Load:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if if_none_match:
            headers["If-None-Match"] = if_none_match
        deadline = time.monotonic() + seconds
        tallies = [_Tally() for _ in range(self.connections)]
        threads = [
            threading.Thread(target=_loop, args=(url, headers, deadline, self.interval, t))
            for t in tallies
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + 30)
        return _merge(tallies, time.monotonic() - started)


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    errors: int = 0


def _loop(
    url: str, headers: dict[str, str], deadline: float, interval: float, tally: _Tally
) -> None:
    target = urlsplit(url)
    path = target.path + (f"?{target.query}" if target.query else "")
    conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=5)
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        try:
            _request(conn, path, headers, tally)
        except (OSError, http.client.HTTPException):
            tally.errors += 1
            conn.close()
        if interval:
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
    conn.close()


def _request(
    conn: http.client.HTTPConnection, path: str, headers: dict[str, str], tally: _Tally
) -> None:
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    tally.latencies.append(time.perf_counter() - started)
    tally.counts.update(
        (
            f"status={response.status}",
            f"source={response.getheader('X-Scan-Source', 'none')}",
            f"worker={response.getheader('X-Served-By', 'none')}",
            f"bytes={len(body)}",
        )
    )
    if response.status >= 400:
        tally.errors += 1


def _merge(tallies: list[_Tally], seconds: float) -> Load:
    latencies = np.array([x for t in tallies for x in t.latencies]) * 1000
    counts: Counter[str] = Counter()
    for t in tallies:
        counts.update(t.counts)
    p50, p99 = np.percentile(latencies, [50, 99]) if latencies.size else (0.0, 0.0)
    return Load(
        client="python",
        requests=int(latencies.size),
        seconds=seconds,
        errors=sum(t.errors for t in tallies),
        p50_ms=float(p50),
        p99_ms=float(p99),
        tally=dict(counts),
    )
