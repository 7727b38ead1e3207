"""`/metrics` aggregates every gunicorn worker (prometheus_client multiprocess mode); logs
are JSON lines with the request id."""

from __future__ import annotations

import json
import re
import time

import requests

from oppscan.metrics import FLUSH_S
from tests.support.polling import poll_until
from tests.support.server import GunicornServer


def total(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    found = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            found += float(line.rsplit(" ", 1)[1])
    return found


def test_metrics_count_requests_of_every_worker(server: GunicornServer) -> None:
    """Requests answered by several workers are all counted in one scrape."""
    headers = {"Authorization": f"Bearer {server.token('mia')}", "Connection": "close"}
    workers: set[str] = set()
    unknown = "scan_" + "f" * 32
    sent = 0
    while sent < 60 or (len(workers) < 2 and sent < 2000):
        resp = requests.get(
            f"{server.url}/api/v1/opportunities/status/{unknown}", headers=headers, timeout=10
        )
        assert 404 == resp.status_code
        workers.add(resp.headers["X-Served-By"])
        sent += 1
    route = "/api/v1/opportunities/status/{scan_id}"

    def counted() -> tuple[float, float]:
        scrape = requests.get(f"{server.url}/metrics", timeout=10)
        assert 200 == scrape.status_code
        assert scrape.headers["content-type"].startswith("text/plain")
        text.append(scrape.text)
        return (
            total(scrape.text, "oppscan_http_requests_total", route=route, status="404"),
            total(scrape.text, "oppscan_scan_reads_total", source="store", outcome="not_found"),
        )

    # Each worker writes what it counted once a second (the scraped one at once).
    text: list[str] = []
    poll_until(lambda: counted() == (sent, sent), timeout=5 * FLUSH_S)
    assert len(workers) >= 2
    assert re.search(r"^oppscan_registry_cache_total\{.*result=\"miss\"", text[-1], re.M)


def wait_finished(server: GunicornServer, headers: dict[str, str], scan_id: str) -> str:
    url = f"{server.url}/api/v1/opportunities/status/{scan_id}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = str(requests.get(url, headers=headers, timeout=10).json()["status"])
        if status in ("complete", "failed", "cancelled"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"{scan_id} did not finish within 60 s")


def test_metrics_follow_a_scan_through_its_life(server: GunicornServer) -> None:
    """A finished scan shows up as started, finished, and one duration per strategy."""
    headers = {"Authorization": f"Bearer {server.token('noor')}"}
    strategies = requests.get(f"{server.url}/api/v1/strategies", headers=headers, timeout=10)
    names = [s["name"] for s in strategies.json()["strategies"]][:4]
    body = {"strategies": names, "symbols": ["BTC-USD", "ETH-USD"], "timeframe": "1h"}
    started = requests.post(
        f"{server.url}/api/v1/opportunities/discover", json=body, headers=headers, timeout=10
    )
    assert 202 == started.status_code
    assert "complete" == wait_finished(server, headers, started.json()["scan_id"])
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    assert 1 == total(text, "oppscan_scans_started_total", kind="scanning")
    assert 1 == total(text, "oppscan_scans_finished_total", status="complete")
    per_strategy = [
        total(text, "oppscan_strategy_duration_seconds_count", strategy=name) for name in names
    ]
    assert [1.0] * len(names) == per_strategy
    assert 0 == total(text, "oppscan_scans_running")


def test_a_not_found_answer_is_logged_with_how_it_was_looked_up(server: GunicornServer) -> None:
    """One JSON line says which scan, worker, request and lookup ended in `not_found`."""
    unknown = "scan_" + "e" * 32
    resp = requests.get(
        f"{server.url}/api/v1/opportunities/status/{unknown}",
        headers={"Authorization": f"Bearer {server.token('omar')}", "X-Request-ID": "trace-42"},
        timeout=10,
    )
    assert 404 == resp.status_code
    deadline = time.monotonic() + 10
    found: list[dict[str, object]] = []
    while not found and time.monotonic() < deadline:
        for line in server.log_text().splitlines():
            if line.startswith("{") and '"scan_not_found"' in line:
                found.append(json.loads(line))
        if not found:
            time.sleep(0.05)
    assert 1 == len(found)
    event = found[0]
    assert {
        "event": "scan_not_found",
        "scan_id": unknown,
        "request_id": "trace-42",
        "worker": resp.headers["X-Served-By"],
        "source": "store",
        "lookup_method": "scan_hash",
        "failure_reason": "unknown_or_expired",
    }.items() <= event.items()


def test_every_counter_is_exported_at_zero_and_running_scans_is_one_series(
    server: GunicornServer,
) -> None:
    """The known series exist from the start (at zero until something happens: an
    alert on a rate sees them), the build says its version, and running scans is one series summed
    over the live workers, with no pid in its labels."""
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    for name, label in [
        ("oppscan_leases_total", 'event="taken_over"'),
        ("oppscan_redis_errors_total", 'kind="ConnectionError"'),
        ("oppscan_scans_finished_total", 'status="failed"'),
        ("oppscan_scans_started_total", 'kind="reused"'),
        ("oppscan_market_fetches_total", 'outcome="rate_limited"'),
    ]:
        assert re.search(rf"^{name}\{{[^}}]*{label}[^}}]*\}} ", text, re.M), (name, label)
    assert re.search(r'^oppscan_build_info\{version="[^"]+"\} 1\.0$', text, re.M)
    running = [line for line in text.splitlines() if line.startswith("oppscan_scans_running")]
    assert 1 == len(running), running
    assert "pid=" not in running[0]
    assert re.search(r"^oppscan_redis_reconnects_total \d", text, re.M)
