"""The client pattern under load: users start scans, pollers follow them to the end.

Each of `users` starts a scan over its own symbol subset (with `force_refresh`, so
it is a real scan), waits until a poller has seen it finish and its results
answer 200, then starts the next. Each of `pollers` cycles through the running
scans: status, now and then results, and results once a scan is finished. Every
request draws on one budget, bounded in count and by the deadline; every thread
stops by itself at the deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from oppscan.loadtest.client import Http, Reply
from oppscan.loadtest.stats import Sample, ScanCounts, scan_seconds

API = "/api/v1"
TERMINAL = frozenset({"complete", "failed", "cancelled"})
TICK_S = 0.25
RETRY_PAUSE_S = 0.1


@dataclass(frozen=True)
class Plan:
    duration_s: float
    users: int
    pollers: int
    symbols_per_scan: int = 8
    max_requests: int = 200_000
    think_s: float = 0.0
    results_every: int = 4  # a running scan's results are read on every n-th status poll


@dataclass(frozen=True)
class Progress:
    elapsed_s: float
    requests: int
    scans_completed: int


@dataclass(frozen=True)
class Outcome:
    samples: tuple[Sample, ...]
    scans: ScanCounts
    elapsed_s: float
    client_cpu_s: float  # CPU this process spent, to tell when the client was the limit


def symbols_for(universe: Sequence[str], user: int, round_: int, size: int) -> list[str]:
    """A window of `size` symbols, distinct per user and per round until the universe wraps."""
    if not universe:
        return []
    size = min(size, len(universe))
    stride = max(1, size // 2)
    start = (user * size + round_ * stride * 7) % len(universe)
    return [universe[(start + i) % len(universe)] for i in range(size)]


@dataclass
class Budget:
    """At most `limit` requests, none after `deadline` (a `time.monotonic()` value)."""

    limit: int
    deadline: float
    used: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit or time.monotonic() >= self.deadline:
                return False
            self.used += 1
            return True

    def spent(self) -> bool:
        with self._lock:
            return self.used >= self.limit or time.monotonic() >= self.deadline


@dataclass
class Scan:
    scan_id: str
    token: str
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class Board:
    """The scans being followed; pollers take them in turn."""

    _running: list[Scan] = field(default_factory=list)
    _cursor: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, scan: Scan) -> None:
        with self._lock:
            self._running.append(scan)

    def pick(self) -> Scan | None:
        with self._lock:
            if not self._running:
                return None
            self._cursor = (self._cursor + 1) % len(self._running)
            return self._running[self._cursor]

    def finish(self, scan: Scan) -> bool:
        """Take `scan` off the board; True only for the first caller."""
        with self._lock:
            if scan not in self._running:
                return False
            self._running.remove(scan)
            return True


@dataclass
class Tally:
    samples: list[Sample] = field(default_factory=list)
    started: int = 0
    completed: int = 0
    failed: int = 0
    seconds: list[float] = field(default_factory=list)
    discovers: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, reply: Reply) -> None:
        with self._lock:
            sample = Sample(reply.status, reply.latency_s, reply.worker, reply.error_code())
            self.samples.append(sample)

    def discover_sent(self) -> None:
        with self._lock:
            self.discovers += 1

    def scan_started(self) -> None:
        with self._lock:
            self.started += 1

    def scan_finished(self, status_body: dict[str, Any]) -> None:
        with self._lock:
            if status_body.get("status") == "complete":
                self.completed += 1
            else:
                self.failed += 1
            seconds = scan_seconds(status_body)
            if seconds is not None:
                self.seconds.append(seconds)

    def recorded(self) -> tuple[Sample, ...]:
        with self._lock:
            return tuple(self.samples)

    def progress(self, elapsed_s: float) -> Progress:
        with self._lock:
            return Progress(elapsed_s, len(self.samples), self.completed)

    def counts(self) -> ScanCounts:
        with self._lock:
            seconds = tuple(self.seconds)
            return ScanCounts(self.started, self.completed, self.failed, seconds, self.discovers)


@dataclass
class Run:
    """What every user and poller thread of one run shares."""

    client: Http
    plan: Plan
    budget: Budget
    tally: Tally = field(default_factory=Tally)
    board: Board = field(default_factory=Board)
    stop: threading.Event = field(default_factory=threading.Event)

    def stopped(self) -> bool:
        return self.stop.is_set() or self.budget.spent()

    def remaining_s(self) -> float:
        return max(0.0, self.budget.deadline - time.monotonic())

    def send(self, request: Callable[[], Reply]) -> Reply | None:
        """One request against the budget, recorded; None once the budget is spent."""
        if self.stop.is_set() or not self.budget.take():
            return None
        reply = request()
        self.tally.record(reply)
        return reply

    def back_off(self, reply: Reply) -> None:
        """Wait as a polite client would after a failure: Retry-After, or a moment."""
        self.stop.wait(min(reply.retry_after or RETRY_PAUSE_S, self.remaining_s()))


def user(run: Run, index: int, token: str, universe: Sequence[str]) -> None:
    """Start a scan, wait for a poller to see it finish, start the next, until the deadline."""
    round_ = 0
    while not run.stopped():
        body = {
            "symbols": symbols_for(universe, index, round_, run.plan.symbols_per_scan),
            "force_refresh": True,
        }
        round_ += 1
        reply = run.send(
            partial(run.client.post_json, f"{API}/opportunities/discover", token, body)
        )
        if reply is None:
            return
        run.tally.discover_sent()
        if reply.status != 202:
            run.back_off(reply)
            continue
        scan = Scan(reply.json()["scan_id"], token)
        run.tally.scan_started()
        run.board.add(scan)
        scan.done.wait(run.remaining_s())


def poller(run: Run) -> None:
    """Follow the running scans, in turn, until the deadline."""
    polls = 0
    while not run.stopped():
        scan = run.board.pick()
        if scan is None:
            run.stop.wait(0.01)
            continue
        polls += 1
        if not poll_once(run, scan, read_results=polls % run.plan.results_every == 0):
            return
        if run.plan.think_s > 0:
            run.stop.wait(run.plan.think_s)


def poll_once(run: Run, scan: Scan, read_results: bool) -> bool:
    """Status, and results when finished or asked; False once the budget is spent."""
    reply = run.send(lambda: _get(run, "status", scan))
    if reply is None:
        return False
    if reply.status != 200:
        run.back_off(reply)
        return True
    body = reply.json()
    if body.get("status") in TERMINAL:
        return _collect(run, scan, body)
    if read_results:
        return run.send(lambda: _get(run, "results", scan)) is not None
    return True


def _collect(run: Run, scan: Scan, status_body: dict[str, Any]) -> bool:
    reply = run.send(lambda: _get(run, "results", scan))
    if reply is None:
        return False
    if reply.status == 200 and run.board.finish(scan):
        run.tally.scan_finished(status_body)
        scan.done.set()
    return True


def _get(run: Run, kind: str, scan: Scan) -> Reply:
    return run.client.get(f"{API}/opportunities/{kind}/{scan.scan_id}", scan.token)


def run_load(
    client: Http,
    tokens: Sequence[str],
    universe: Sequence[str],
    plan: Plan,
    on_tick: Callable[[Progress], None] | None = None,
) -> Outcome:
    """Run the pattern for `plan.duration_s` and return what it measured."""
    started, cpu_started = time.monotonic(), time.process_time()
    run = Run(client, plan, Budget(plan.max_requests, started + plan.duration_s))
    threads = [
        threading.Thread(target=user, args=(run, i, tokens[i % len(tokens)], universe), daemon=True)
        for i in range(plan.users)
    ] + [threading.Thread(target=poller, args=(run,), daemon=True) for _ in range(plan.pollers)]
    for thread in threads:
        thread.start()
    try:
        _watch(run, started, on_tick)
    finally:
        run.stop.set()
    for thread in threads:
        # A request in flight at the deadline finishes within the client's timeout.
        thread.join(client.timeout_s + 1.0)
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu_started
    return Outcome(run.tally.recorded(), run.tally.counts(), elapsed, cpu)


def _watch(run: Run, started: float, on_tick: Callable[[Progress], None] | None) -> None:
    while not run.budget.spent():
        run.stop.wait(min(TICK_S, run.remaining_s()))
        if on_tick is not None:
            on_tick(run.tally.progress(time.monotonic() - started))
