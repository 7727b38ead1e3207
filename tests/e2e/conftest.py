"""End-to-end fixtures: real gunicorn with several workers on a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import GunicornServer


@pytest.fixture
def server(redis_url: str, tmp_path: Path) -> Iterator[GunicornServer]:
    """gunicorn with 4 workers whose market data answers slowly, one fetch at a time,
    so a scan runs long enough to be polled while its owner runs it."""
    env = {"OPPSCAN_SYNTHETIC_LATENCY_MS": "15", "OPPSCAN_FETCH_CONCURRENCY": "1"}
    service = GunicornServer(redis_url, tmp_path, workers=4, env=env).start()
    yield service
    service.stop()
