"""`/metrics` aggregates every gunicorn worker (prometheus_client multiprocess mode)."""

from __future__ import annotations

import re

import requests

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
    scrape = requests.get(f"{server.url}/metrics", timeout=10)
    assert 200 == scrape.status_code
    assert scrape.headers["content-type"].startswith("text/plain")
    text = scrape.text
    route = "/api/v1/opportunities/status/{scan_id}"
    assert sent == total(text, "oppscan_http_requests_total", route=route, status="404")
    assert sent == total(text, "oppscan_scan_reads_total", source="store", outcome="not_found")
    assert len(workers) >= 2
    assert re.search(r"^oppscan_registry_cache_total\{.*result=\"miss\"", text, re.M)
