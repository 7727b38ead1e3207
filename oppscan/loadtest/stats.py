"""What one configuration's run measured, reduced to figures. Pure: no I/O, no clock."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oppscan.model import parse_iso

TRANSPORT_ERROR = 0  # the status recorded when no HTTP answer came back


@dataclass(frozen=True)
class Sample:
    """One request: its HTTP status (0 when none came), latency and answering worker."""

    status: int
    latency_s: float
    worker: str | None = None
    error: str | None = None  # status and `error` code of a failed answer


@dataclass(frozen=True)
class Config:
    """One service configuration under test; `workers` is None for a service given by URL."""

    label: str
    workers: int | None = None
    threads: int | None = None


@dataclass(frozen=True)
class Summary:
    """The figures of one configuration's run."""

    label: str
    workers: int | None
    threads: int | None
    duration_s: float
    requests: int
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    not_found: int
    server_errors: int  # 5xx other than 503
    unavailable: int  # 503, with Retry-After
    transport_errors: int
    rate_limited: int  # 429: the limit working, not a failure, but fewer scans started
    scans_started: int
    scans_completed: int
    scans_failed: int
    median_scan_s: float
    workers_seen: int
    client_cpu_percent: float = 0.0  # of one core; near 100 means the client was the limit
    error_codes: tuple[tuple[str, int], ...] = ()  # most frequent first
    discovers: int = 0  # discover requests sent, whatever became of them

    @property
    def failures(self) -> int:
        """Requests no client should see under load: 404, 5xx (503 included), no answer."""
        return self.not_found + self.server_errors + self.unavailable + self.transport_errors

    @property
    def mostly_rate_limited(self) -> bool:
        """More than half of the discover requests were answered 429 (only discover is):
        the server's per-user limits set the pace, not its capacity."""
        return 2 * self.rate_limited > self.discovers > 0


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100), interpolated between ranks; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def scan_seconds(status_body: Mapping[str, Any]) -> float | None:
    """A finished scan's run time from the server's own timestamps, if it has both."""
    created, completed = status_body.get("created_at"), status_body.get("completed_at")
    if not isinstance(created, str) or not isinstance(completed, str):
        return None
    return (parse_iso(completed) - parse_iso(created)).total_seconds()


@dataclass(frozen=True)
class ScanCounts:
    """What became of the scans a run started."""

    started: int = 0
    completed: int = 0
    failed: int = 0
    seconds: tuple[float, ...] = ()
    discovers: int = 0  # discover requests sent, started or not


def summarize(
    config: Config,
    samples: Sequence[Sample],
    elapsed_s: float,
    scans: ScanCounts,
    client_cpu_s: float = 0.0,
) -> Summary:
    """Reduce a run's samples and scan counts to its figures."""
    answered = [s.latency_s * 1000.0 for s in samples if s.status != TRANSPORT_ERROR]
    statuses = [s.status for s in samples]
    return Summary(
        label=config.label,
        workers=config.workers,
        threads=config.threads,
        duration_s=round(elapsed_s, 3),
        requests=len(samples),
        requests_per_s=round(len(samples) / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        p50_ms=round(percentile(answered, 50), 2),
        p95_ms=round(percentile(answered, 95), 2),
        p99_ms=round(percentile(answered, 99), 2),
        not_found=statuses.count(404),
        server_errors=sum(1 for s in statuses if s >= 500 and s != 503),
        unavailable=statuses.count(503),
        transport_errors=statuses.count(TRANSPORT_ERROR),
        rate_limited=statuses.count(429),
        scans_started=scans.started,
        scans_completed=scans.completed,
        scans_failed=scans.failed,
        median_scan_s=round(statistics.median(scans.seconds), 3) if scans.seconds else 0.0,
        workers_seen=len(_workers(samples)),
        client_cpu_percent=round(100.0 * client_cpu_s / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        error_codes=error_codes(samples),
        discovers=scans.discovers,
    )


def median_runs(runs: Sequence[Summary]) -> list[Summary]:
    """Per configuration (by label, first seen first), its run of median throughput: the
    lower middle one for an even count, so a noisy machine's best run does not flatter it."""
    by_label: dict[str, list[Summary]] = {}
    for summary in runs:
        by_label.setdefault(summary.label, []).append(summary)
    return [_median_run(group) for group in by_label.values()]


def _median_run(group: Sequence[Summary]) -> Summary:
    ordered = sorted(group, key=lambda s: s.requests_per_s)
    return ordered[(len(ordered) - 1) // 2]


def error_codes(samples: Iterable[Sample]) -> tuple[tuple[str, int], ...]:
    """How often each error was answered, most frequent first."""
    counts = Counter(s.error for s in samples if s.error)
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _workers(samples: Iterable[Sample]) -> set[str]:
    return {s.worker for s in samples if s.worker}
