"""Every Prometheus metric oppscan exports, defined once.

Under gunicorn the master points `PROMETHEUS_MULTIPROC_DIR` at an empty folder
before any worker starts, so `/metrics` on any worker aggregates all of them.
"""

from __future__ import annotations

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
    "oppscan_scans_running", "Scans owned by a worker now", multiprocess_mode="liveall"
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


def render(multiprocess_dir: str | None) -> tuple[bytes, str]:
    """The exposition text: every worker's metrics when running multi-process."""
    if multiprocess_dir is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]  # untyped upstream
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_dead(pid: int, multiprocess_dir: str) -> None:
    """Drop a dead worker's live gauges (gunicorn's `child_exit`)."""
    multiprocess.mark_process_dead(pid, multiprocess_dir)  # type: ignore[no-untyped-call]  # untyped upstream
