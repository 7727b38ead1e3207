"""Every Prometheus metric oppscan exports, defined once.

Under gunicorn the master points `PROMETHEUS_MULTIPROC_DIR` at an empty folder
before any worker starts, so `/metrics` on any worker aggregates all of them.

Each process writes its own `<type>_<pid>.db` files there, and a scrape merges
every file. So that recycled workers (`max_requests`) do not leave files to be
merged for ever, `retire` folds a dead process's counters and histograms into
one `<type>_archive.db` per type, which keeps their totals, and deletes its
files. Scrapes hold a shared lock on the folder and a fold an exclusive one, so
a scrape sees every total either before or after a fold, never twice or not
at all.

The per-request metrics (requests, their latency, scan reads, cache lookups)
are tallied in the process and written to their files once a second, by
`Tally`: a multi-process `inc` is a lock, a `getpid` and an mmap write, and a
request made five of them, a third of what oppscan added to a bare Falcon
answer. A scrape writes its own worker's tally first; the others' lag it by a
second at most, and a stopping worker writes its own before it exits.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.mmap_dict import MmapedDict

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUESTS = Counter(
    "oppscan_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
REQUEST_SECONDS = Histogram(
    "oppscan_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
SCAN_READS = Counter(
    "oppscan_scan_reads_total",
    "Scan lookups by where they were answered and how they ended",
    ["source", "outcome"],
)
CACHE_LOOKUPS = Counter(
    "oppscan_registry_cache_total", "Registry cache lookups of non-local scans", ["result"]
)
SCANS_STARTED = Counter("oppscan_scans_started_total", "discover answers by kind", ["kind"])
SCANS_FINISHED = Counter(
    "oppscan_scans_finished_total", "Scans that reached a terminal status", ["status"]
)
SCANS_RUNNING = Gauge(
    "oppscan_scans_running",
    "Scans owned by this server's live workers now",
    multiprocess_mode="livesum",  # one series, whatever the workers' pids
)
OLDEST_SCAN_SECONDS = Gauge(
    "oppscan_oldest_running_scan_seconds",
    "Age of the oldest scan a live worker of this server runs (0: none)",
    multiprocess_mode="livemax",
)
BUILD_INFO = Gauge(
    "oppscan_build_info",
    "The version serving (always 1)",
    ["version"],
    multiprocess_mode="livemax",  # a live gauge: a dead worker's file is removed
)
STRATEGY_SECONDS = Histogram(
    "oppscan_strategy_duration_seconds",
    "Time one strategy took within a scan",
    ["strategy", "status"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
LEASES = Counter(
    "oppscan_leases_total", "Lease events: claimed, taken_over, released, lost", ["event"]
)
REDIS_ERRORS = Counter("oppscan_redis_errors_total", "Failed Redis calls by kind", ["kind"])
REDIS_RECONNECTS = Counter("oppscan_redis_reconnects_total", "Store recoveries after an outage")


# The label values each counter is known to take, exported at zero from the start:
# a rate or an alert over a series that does not exist yet sees nothing.
KNOWN_LABELS: tuple[tuple[Counter, tuple[str, ...]], ...] = (
    (SCANS_STARTED, ("scanning", "queued", "deduplicated", "reused")),
    (SCANS_FINISHED, ("complete", "failed", "cancelled")),
    (LEASES, ("claimed", "taken_over", "released", "lost")),
    (REDIS_ERRORS, ("ConnectionError", "TimeoutError", "circuit_open", "READONLY", "OOM")),
)
FETCH_OUTCOMES = ("fetched", "cached", "shared", "error", "rate_limited")


def export_at_zero(version: str, market_sources: Iterable[str]) -> None:
    """Create every known series of this process (at zero), and the build info."""
    for counter, values in KNOWN_LABELS:
        for value in values:
            counter.labels(value)
    for source in market_sources:
        for outcome in FETCH_OUTCOMES:
            MARKET_FETCHES.labels(source, outcome)
    BUILD_INFO.labels(version).set(1)


FLUSH_S = 1.0  # how often a process writes its tallies to its metric files


class Tally:
    """Counts and observations added up in this process, written to their metrics
    by `flush`: every `FLUSH_S` by a thread of its own, before a scrape, and at exit.

    One lock held for a dict update per call; the writes to the metric files
    happen outside it. Histogram observations are kept per bucket and added to
    the histogram's own bucket and sum values, as `observe` would have.
    """

    def __init__(self, every: float = FLUSH_S) -> None:
        self._every = every
        self._lock = threading.Lock()
        self._counts: dict[Any, float] = {}
        self._observed: dict[Any, list[float]] = {}  # bucket counts, then the sum
        self._flusher: threading.Thread | None = None

    def add(self, child: Any, amount: float) -> None:
        with self._lock:
            self._counts[child] = self._counts.get(child, 0.0) + amount
            if self._flusher is None:
                self._start()

    def observe(self, child: Any, value: float) -> None:
        bucket = bisect.bisect_left(child._upper_bounds, value)  # the first bound >= value
        with self._lock:
            row = self._observed.get(child)
            if row is None:
                row = self._observed[child] = [0.0] * (len(child._upper_bounds) + 1)
            row[bucket] += 1
            row[-1] += value
            if self._flusher is None:
                self._start()

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
            observed, self._observed = self._observed, {}
        for child, amount in counts.items():
            child.inc(amount)
        for child, row in observed.items():
            for bucket, count in enumerate(row[:-1]):
                if count:
                    child._buckets[bucket].inc(count)
            child._sum.inc(row[-1])

    def forget_flusher(self) -> None:
        """In a forked child: the parent's thread is not there; start one on first use."""
        self._lock = threading.Lock()
        self._counts, self._observed, self._flusher = {}, {}, None

    def _start(self) -> None:
        self._flusher = threading.Thread(target=self._loop, name="metrics-tally", daemon=True)
        self._flusher.start()

    def _loop(self) -> None:
        while True:
            time.sleep(self._every)
            self.flush()


TALLY = Tally()
os.register_at_fork(after_in_child=TALLY.forget_flusher)
atexit.register(TALLY.flush)


@dataclass(frozen=True)
class HotCounter:
    """A labelled counter counted through `TALLY` (for what every request counts)."""

    child: Any

    def inc(self, amount: float = 1.0) -> None:
        TALLY.add(self.child, amount)


@dataclass(frozen=True)
class HotHistogram:
    """A labelled histogram observed through `TALLY`."""

    child: Any

    def observe(self, value: float) -> None:
        TALLY.observe(self.child, value)


def render(multiprocess_dir: str | None) -> tuple[bytes, str]:
    """The exposition text: every worker's metrics when running multi-process (this
    one's tally written first)."""
    TALLY.flush()
    if multiprocess_dir is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]  # untyped upstream
    with _folder_lock(Path(multiprocess_dir), fcntl.LOCK_SH, SCRAPE_WAIT):
        # Even unlocked: a master stopped in the middle of a fold must not hang
        # every scrape; this one may then miscount what is being folded.
        return generate_latest(registry), CONTENT_TYPE_LATEST


FOLDED_TYPES = ("counter", "histogram", "summary")  # types whose files hold totals
FOLD_WAIT = 0.5  # seconds gunicorn's master waits for scrapes before it folds later
SCRAPE_WAIT = 5.0  # seconds a scrape waits for a fold (which takes milliseconds)


def retire(pid: int, multiprocess_dir: str) -> int | None:
    """A process is dead (gunicorn's `child_exit`): drop its live gauges, and fold
    the files of every dead process into the archives.

    Returns how many files were folded, or None when scrapes held the folder
    for `FOLD_WAIT` (the next call folds them: it looks for every dead pid).
    """
    multiprocess.mark_process_dead(pid, multiprocess_dir)  # type: ignore[no-untyped-call]  # untyped upstream
    folder = Path(multiprocess_dir)
    with _folder_lock(folder, fcntl.LOCK_EX, FOLD_WAIT) as locked:
        if not locked:
            return None
        dead = [(path, kind) for path, kind, owner in _process_files(folder) if not _alive(owner)]
        for path, kind in dead:
            if kind in FOLDED_TYPES:
                _add_into(folder / f"{kind}_archive.db", path)
            path.unlink()  # a dead process's live gauge too (strategy children have some)
        return len(dead)


def _process_files(folder: Path) -> Iterator[tuple[Path, str, int]]:
    """(file, type, pid) of each per-process file: `counter_12.db`, `gauge_liveall_12.db`."""
    for path in folder.glob("*.db"):
        parts = path.stem.split("_")
        kind, pid = parts[0], parts[-1]
        live_gauge = kind == "gauge" and len(parts) == 3 and parts[1].startswith("live")
        if pid.isdigit() and (kind in FOLDED_TYPES or live_gauge):
            yield path, kind, int(pid)


def _add_into(archive: Path, dead: Path) -> None:
    """Add every value of `dead` to the same key in `archive` (raw values: histogram
    buckets are stored per bucket and accumulated only when scraped)."""
    into = MmapedDict(str(archive))  # type: ignore[no-untyped-call]  # untyped upstream
    try:
        for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(dead)):  # type: ignore[no-untyped-call]  # untyped upstream
            current, _ = into.read_value(key)  # type: ignore[no-untyped-call]  # untyped upstream
            into.write_value(key, current + value, timestamp)  # type: ignore[no-untyped-call]  # untyped upstream
    finally:
        into.close()  # type: ignore[no-untyped-call]  # untyped upstream


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # the pid is in use again, by someone else's process
    return True


@contextlib.contextmanager
def _folder_lock(folder: Path, mode: int, wait: float) -> Iterator[bool]:
    """flock on the folder's lock file; yields False if not taken within `wait` s."""
    with open(folder / ".fold.lock", "a") as lock:
        if not _take(lock.fileno(), mode, wait):
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _take(fd: int, mode: int, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)  # scrapes and folds hold the lock for milliseconds


MARKET_FETCHES = Counter(
    "oppscan_market_fetches_total",
    "Market series scans asked for, by how they were had: fetched, cached, shared, error, "
    "rate_limited (a 429/418 answer)",
    ["source", "outcome"],
)
MARKET_FETCH_SECONDS = Histogram(
    "oppscan_market_fetch_duration_seconds",
    "Time one series took to fetch from its source",
    ["source"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
