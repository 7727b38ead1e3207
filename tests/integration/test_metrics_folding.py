"""Dead processes' Prometheus files are folded into one archive per type: totals stay
exact, even for a scrape during the fold, and the folder stops growing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from oppscan.metrics import render, retire

REQUESTS = "oppscan_http_requests_total"
SECONDS = "oppscan_http_request_duration_seconds"

# What one worker records: 3 requests, one latency each, in its own process.
WORKER = """
from oppscan.metrics import REQUESTS, REQUEST_SECONDS
for _ in range(3):
    REQUESTS.labels("/r", "GET", "200").inc()
    REQUEST_SECONDS.labels("/r", "GET").observe(0.02)
"""


def run_workers(folder: Path, count: int) -> list[int]:
    """`count` processes that record metrics into `folder` and exit; their pids."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    pids = []
    for _ in range(count):
        child = subprocess.Popen([sys.executable, "-c", WORKER], env=env)
        assert 0 == child.wait(60)
        pids.append(child.pid)
    return pids


def totals(folder: Path) -> tuple[float, float, float]:
    """The scrape's request count, latency count and latency bucket at 25 ms."""
    text = render(str(folder))[0].decode()

    def sample(prefix: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
        )

    return (
        sample(f"{REQUESTS}{{"),
        sample(f"{SECONDS}_count{{"),
        sample(f'{SECONDS}_bucket{{le="0.025"'),
    )


def test_folding_keeps_totals_and_bounds_the_folder(tmp_path: Path) -> None:
    """Six dead workers folded in two rounds: same totals, two archive files, nothing else."""
    first = run_workers(tmp_path, 3)
    before = totals(tmp_path)
    for pid in first:
        retire(pid, str(tmp_path))
    after_first = totals(tmp_path)
    for pid in run_workers(tmp_path, 3):
        retire(pid, str(tmp_path))
    assert (9.0, 9.0, 9.0) == before
    assert before == after_first
    assert (18.0, 18.0, 18.0) == totals(tmp_path)
    assert ["counter_archive.db", "histogram_archive.db"] == sorted(
        p.name for p in tmp_path.glob("*.db")
    )


def test_a_scrape_during_folds_never_sees_a_total_move(tmp_path: Path) -> None:
    """Scrapes running while twelve dead workers are folded all succeed with the same totals."""
    dead = run_workers(tmp_path, 12)
    expected = totals(tmp_path)
    seen: list[tuple[float, float, float]] = []
    failed: list[str] = []
    folded = threading.Event()

    def scrape() -> None:
        while not folded.is_set():
            try:
                seen.append(totals(tmp_path))
            except Exception as exc:  # a file gone, or half made, under the scrape
                failed.append(repr(exc))

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for pid in dead:
            retire(pid, str(tmp_path))
    finally:
        folded.set()
        scraper.join(30)
    assert [] == failed
    assert {expected} == {*seen, totals(tmp_path)}
    assert seen, "the scraper ran during the folds"
