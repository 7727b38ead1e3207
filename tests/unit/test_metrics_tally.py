"""The per-request metrics are tallied in process and written in batches: once
written, the exposition is exactly what counting each event directly gives."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from oppscan.metrics import LATENCY_BUCKETS, Tally
from tests.support.polling import poll_until

LATENCIES = (0.0001, 0.0005, 0.0007, 0.003, 0.02, 0.02, 0.4, 1.0, 7.5)


def metrics() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    counter = Counter("t_requests_total", "requests", ["route"], registry=registry)
    histogram = Histogram(
        "t_seconds", "latency", ["route"], buckets=LATENCY_BUCKETS, registry=registry
    )
    return registry, counter, histogram


def exposed(registry: CollectorRegistry) -> list[str]:
    """The exposition's samples, without the time each child was created."""
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def test_a_flushed_tally_exposes_what_direct_counting_does() -> None:
    """Counts and observations on every bucket edge and past the last: same text."""
    direct, counter, histogram = metrics()
    tallied, t_counter, t_histogram = metrics()
    tally = Tally(every=3600)
    for route in ("/a", "/b"):
        for value in LATENCIES:
            counter.labels(route).inc()
            histogram.labels(route).observe(value)
            tally.add(t_counter.labels(route), 1.0)
            tally.observe(t_histogram.labels(route), value)
    assert 0.0 == t_counter.labels("/a")._value.get()  # nothing written before the flush
    tally.flush()
    assert exposed(direct) == exposed(tallied)
    tally.flush()  # a second flush adds nothing
    assert exposed(direct) == exposed(tallied)


def test_the_tally_writes_itself_every_period() -> None:
    """Without a scrape or an exit, what was counted is written within a period."""
    _, counter, _ = metrics()
    tally = Tally(every=0.05)
    tally.add(counter.labels("/a"), 2.0)
    poll_until(lambda: counter.labels("/a")._value.get() == 2.0, timeout=5)


def test_threads_add_while_flushes_run_and_nothing_is_lost_or_written_twice() -> None:
    """Eight threads count and observe while flushes run in between: once all is
    flushed, the totals are exact."""
    _, counter, histogram = metrics()
    tally = Tally(every=3600)
    start = threading.Barrier(9)

    def work() -> None:
        start.wait()
        for n in range(2000):
            tally.add(counter.labels("/a"), 1.0)
            tally.observe(histogram.labels("/a"), LATENCIES[n % len(LATENCIES)])

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    start.wait()
    while any(thread.is_alive() for thread in threads):
        tally.flush()
    tally.flush()
    assert 16_000 == counter.labels("/a")._value.get()
    buckets = [b.get() for b in histogram.labels("/a")._buckets]
    assert 16_000 == sum(buckets)
    expected_sum = 8 * sum(LATENCIES[n % len(LATENCIES)] for n in range(2000))
    assert abs(expected_sum - histogram.labels("/a")._sum.get()) < 1e-6
