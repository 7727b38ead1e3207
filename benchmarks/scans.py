"""Starting and following scans over the API, and a pool that keeps N scans running."""

from __future__ import annotations

import multiprocessing
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

import redis

from oppscan.client import Client, OppscanError
from oppscan.storage import Keys

API = "/api/v1"
TERMINAL = frozenset({"complete", "failed", "cancelled"})


def client(base_url: str, token: str) -> Client:
    """One user's client of one server (`oppscan.client`)."""
    return Client(base_url, token)


def start_scan(api: Client, **body: Any) -> str:
    """A new scan's id; timeframe 1h unless `body` says otherwise."""
    return api.discover(**{"timeframe": "1h", **body}).scan_id


def wait(api: Client, scan_id: str, poll: float = 0.02, timeout: float = 60.0) -> str:
    """Poll until the scan is finished; its final status."""
    return api.scan(scan_id).wait(interval=poll, timeout=timeout).status


def status_path(scan_id: str) -> str:
    return f"{API}/opportunities/status/{scan_id}"


def results_path(scan_id: str) -> str:
    return f"{API}/opportunities/results/{scan_id}"


@dataclass
class BusyStats:
    started: int = 0
    finished: int = 0
    errors: int = 0
    durations: list[float] = field(default_factory=list)
    running_samples: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        samples = self.running_samples or [0]
        durations = self.durations or [0.0]
        return {
            "started": self.started,
            "finished": self.finished,
            "errors": self.errors,
            "running_mean": round(statistics.fmean(samples), 2),
            "running_min": min(samples),
            "scan_seconds_median": round(statistics.median(durations), 3),
        }


@dataclass(frozen=True)
class BusySpec:
    """`count` scans of every strategy on `base_url`, each by its own user.

    Their statuses are read from Redis (`redis_url`), so that following them
    adds no HTTP load beside the one being measured.
    """

    base_url: str
    redis_url: str
    symbols: tuple[str, ...]
    count: int
    token_for: Callable[[str], str]
    poll: float = 0.02


class BusyScans:
    """Keeps `spec.count` scans running in a child process, so the poller measuring
    latency in this process does not share an interpreter lock with it.

    Every scan asks `force_refresh` with a symbol set no other scan had, and comes
    from a user of its own (the per-user limits stay out of the way), so none
    joins or reuses another; a finished one is replaced at once.
    """

    def __init__(self, spec: BusySpec) -> None:
        ctx = multiprocessing.get_context("fork")
        self._ready = ctx.Event()
        self._sampling = ctx.Event()
        self._halt = ctx.Event()
        self._stats_in, stats_out = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=_busy_main,
            args=(spec, self._ready, self._sampling, self._halt, stats_out),
            name="busy-scans",
            daemon=True,
        )

    def start(self, timeout: float = 15.0) -> BusyScans:
        self._process.start()
        self._ready.wait(timeout)
        return self

    def sample(self, on: bool) -> None:
        """Count the running scans from now (on) or no longer (off)."""
        (self._sampling.set if on else self._sampling.clear)()

    def stop(self, timeout: float = 30.0) -> BusyStats:
        self._halt.set()
        stats = self._stats_in.recv() if self._stats_in.poll(timeout) else BusyStats()
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
        return stats


def _busy_main(spec: BusySpec, ready: Event, sampling: Event, halt: Event, out: Connection) -> None:
    pool = _Pool(spec)
    try:
        pool.run(ready, sampling, halt)
    finally:
        out.send(pool.stats)


class _Pool:
    def __init__(self, spec: BusySpec) -> None:
        self._spec = spec
        self._redis = redis.Redis.from_url(spec.redis_url)
        self._keys = Keys()
        self._running: dict[str, float] = {}  # scan id: when it started
        self._used: set[tuple[str, ...]] = set()
        self._rng = random.Random(7)
        self.stats = BusyStats()

    def run(self, ready: Event, sampling: Event, halt: Event, limit: float = 600.0) -> None:
        deadline = time.monotonic() + limit
        while not halt.is_set() and time.monotonic() < deadline:
            try:
                self._check()
                if sampling.is_set():
                    self.stats.running_samples.append(len(self._running))
                self._top_up()
                ready.set()
            except (OppscanError, redis.RedisError):
                self.stats.errors += 1
            time.sleep(self._spec.poll)

    def _top_up(self) -> None:
        while len(self._running) < self._spec.count:
            user = f"busy{self.stats.started}"
            token = self._spec.token_for(user)
            with Client(self._spec.base_url, token, retries=0) as api:
                scan = api.discover(
                    symbols=self._fresh_symbols(), timeframe="1h", force_refresh=True
                )
            self._running[scan.scan_id] = time.monotonic()
            self.stats.started += 1

    def _check(self) -> None:
        """Forget the scans that finished, reading every status in one round trip."""
        ids = list(self._running)
        pipe = self._redis.pipeline(transaction=False)
        for scan_id in ids:
            pipe.hget(self._keys.scan(scan_id), "status")
        for scan_id, status in zip(ids, pipe.execute(), strict=True):
            if status is not None and status.decode() in TERMINAL:
                self.stats.finished += 1
                self.stats.durations.append(time.monotonic() - self._running.pop(scan_id))

    def _fresh_symbols(self) -> list[str]:
        """A symbol set no scan of this pool had: all symbols but a few, at random."""
        keep = len(self._spec.symbols) - 4
        for _ in range(1000):
            chosen = tuple(sorted(self._rng.sample(self._spec.symbols, keep)))
            if chosen not in self._used:
                self._used.add(chosen)
                return list(chosen)
        raise RuntimeError("no fresh symbol set left")
