"""The Python client against a real gunicorn with 4 workers: a scan followed to its
results with conditional polls, a 429 waited out as the service asks, and errors
raised as their types."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oppscan.client import (
    BadRequest,
    Client,
    NotFound,
    ScanState,
    ServiceUnreachable,
    Unauthorized,
)
from oppscan.processes import free_port
from tests.support.recording import Recording
from tests.support.server import GunicornServer


@pytest.fixture
def server(redis_url: str, tmp_path: Path) -> Iterator[GunicornServer]:
    """4 workers; scans run a few seconds; one active scan per user."""
    env = {
        "OPPSCAN_SYNTHETIC_LATENCY_MS": "20",
        "OPPSCAN_FETCH_CONCURRENCY": "1",
        "OPPSCAN_MAX_ACTIVE_SCANS_PER_USER": "1",
    }
    started = GunicornServer(redis_url, tmp_path, workers=4, env=env).start()
    yield started
    started.stop()


def test_a_scan_is_followed_to_its_results_with_conditional_polls(
    server: GunicornServer,
) -> None:
    """wait() reports progress that never goes back, polls at the service's pace and
    gets 304s for unchanged states; the results are the finished scan's."""
    recording = Recording()
    seen: list[ScanState] = []
    with Client(server.url, server.token("ana"), transport=recording) as client:
        scan = client.discover(symbols=["BTC-USD", "ETH-USD", "SOL-USD"], timeframe="1h")
        results = scan.wait(on_progress=seen.append, timeout=60, interval=0.05)
        again = scan.status()
    assert "complete" == results.status
    assert 14 == results.body["metadata"]["strategies_completed"]
    assert seen[-1].finished
    counts = [s.completed for s in seen]
    assert counts == sorted(counts)
    assert 304 in recording.statuses, recording.statuses
    assert 304 == recording.statuses[-1]  # the finished state, asked again
    assert again == seen[-1]


def test_a_429_is_waited_out_as_the_service_asks(server: GunicornServer) -> None:
    """One active scan per user: a second discover gets 429 with Retry-After, the
    client waits that long and tries again, once the first scan is done."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)  # the service must see the time pass

    with Client(server.url, server.token("ben"), sleep=sleep) as client:
        first = client.discover(symbols=["BTC-USD", "ETH-USD"], timeframe="4h")
        second = client.discover(symbols=["SOL-USD"], timeframe="4h")
        assert "complete" == first.wait(timeout=60).status
        assert "complete" == second.wait(timeout=60).status
    assert 5.0 in waits


def test_errors_are_raised_as_their_types(server: GunicornServer) -> None:
    """A bad request says what is wrong; an unknown scan is NotFound; a bad token is
    Unauthorized; nothing listening is ServiceUnreachable."""
    with Client(server.url, server.token("cy")) as client:
        with pytest.raises(BadRequest, match="unknown_strategy"):
            client.discover(strategies=["no_such_strategy"])
        with pytest.raises(NotFound):
            client.scan("scan_" + "0" * 32).status()
        assert "momentum" in client.strategies()
    with Client(server.url, "not-a-token") as client, pytest.raises(Unauthorized):
        client.scans()
    nowhere = f"http://127.0.0.1:{free_port()}"
    with Client(nowhere, "t") as client, pytest.raises(ServiceUnreachable):
        client.symbols()
